"""Databases as an older version of Pomogator left them."""

from __future__ import annotations

import contextlib
import io

from pomogator.store.engine import APP_NAME, open_database


async def migrate_up_to(url: str, last: str) -> None:
    """Apply this version's migrations up to and including ``last``, as a version that shipped no more did."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    from pomogator.store import piccolo_conf

    async with open_database(url, migrate=False) as database:
        piccolo_conf.DB = database.engine
        with contextlib.redirect_stdout(io.StringIO()):
            result = await run_forwards(app_name=APP_NAME, migration_id=last)
        assert result.success, result.message
