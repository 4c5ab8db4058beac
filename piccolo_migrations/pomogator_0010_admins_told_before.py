"""The payments there were before the admins' notices were kept: their admins were told by the code that recorded
them, so none of them is told again. Raw statements that run the same on SQLite and PostgreSQL, in a migration of their
own: Piccolo runs a migration's raw steps before its table steps (``pomogator_0009_admins_notices`` adds the columns).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-29T10:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "The admins were told of the payments and refunds recorded before"

STATEMENTS = (
    "UPDATE payments SET admins_notified_at = updated_at WHERE status = 'succeeded' AND admins_notified_at IS NULL",
    "UPDATE payments SET admins_told_refunded = refunded_amount",
)


async def mark_told() -> None:
    engine = engine_finder()
    assert engine is not None
    for statement in STATEMENTS:
        await engine.run_ddl(statement)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    manager.add_raw(mark_told)
    return manager
