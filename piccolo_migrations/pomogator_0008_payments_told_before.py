"""Payments that succeeded before ``payments.notified_at`` existed were told of then: they are not told again.

Piccolo runs a migration's raw steps before its table steps, so this lives apart from the column's migration.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-28T01:30:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "Payments that succeeded before notices were recorded count as told"

TOLD_BEFORE = "UPDATE payments SET notified_at = updated_at WHERE status = 'succeeded' AND notified_at IS NULL"


async def mark_told() -> None:
    engine = engine_finder()
    assert engine is not None
    await engine.run_ddl(TOLD_BEFORE)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    manager.add_raw(mark_told)
    return manager
