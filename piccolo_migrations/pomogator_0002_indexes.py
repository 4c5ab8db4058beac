"""Composite indexes; raw statements that run the same on SQLite and PostgreSQL.

Piccolo runs a migration's raw steps before its table steps, so these live in their own migration.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-26T06:13:50:000000"
VERSION = "1.38.0"
DESCRIPTION = "Composite indexes"

INDEXES = (
    # The quota's conditional upsert relies on this one.
    "CREATE UNIQUE INDEX IF NOT EXISTS daily_usage_person_model_day ON daily_usage (telegram_id, model, day)",
    "CREATE INDEX IF NOT EXISTS dialog_messages_person_id ON dialog_messages (telegram_id, id)",
    "CREATE INDEX IF NOT EXISTS subscriptions_person_ends ON subscriptions (telegram_id, ends_at)",
)


async def create_indexes() -> None:
    engine = engine_finder()
    assert engine is not None
    for statement in INDEXES:
        await engine.run_ddl(statement)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    manager.add_raw(create_indexes)
    return manager
