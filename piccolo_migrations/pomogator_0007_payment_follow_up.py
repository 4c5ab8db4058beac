"""payments.notified_at, payments.notice_claimed_at and payments.refund_waiting_id: what the periodic check still
owes a payment after it was recorded — the payer's notice, if it did not go out, and a refund YooKassa answered as
pending. Payments recorded before have no claim, so none of them is told again."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import Column
from piccolo.columns.column_types import Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-28T01:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "When the payer was told of each payment (and claimed to be told), and its refund pending at YooKassa"

COLUMNS: tuple[tuple[str, type[Column], dict[str, Any]], ...] = (
    ("notified_at", Timestamptz, {}),
    ("notice_claimed_at", Timestamptz, {}),
    ("refund_waiting_id", Varchar, {"length": 64}),
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    for name, column_class, own in COLUMNS:
        manager.add_column(
            table_class_name="Payment",
            tablename="payments",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={
                **own,
                "default": None,
                "null": True,
                "primary_key": False,
                "unique": False,
                "index": False,
                "index_method": IndexMethod.btree,
                "choices": None,
                "db_column_name": None,
                "secret": False,
            },
            schema=None,
        )
    return manager
