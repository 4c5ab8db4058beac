"""payments.admins_notified_at, payments.admins_told_refunded and payments.admins_claimed_at: the admins' notices of a
payment and of its refunds are owed until sent, like the payer's, so the periodic check sends one that did not go
out. The next migration marks what the payments there were then had told them."""

import decimal
from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import Column
from piccolo.columns.column_types import Numeric, Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-29T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "When the admins were told of each payment, of how much of its refunds, and who is telling them"

COLUMNS: tuple[tuple[str, type[Column], dict[str, Any]], ...] = (
    ("admins_notified_at", Timestamptz, {"default": None, "null": True}),
    ("admins_told_refunded", Numeric, {"default": decimal.Decimal("0"), "digits": (12, 2), "null": False}),
    ("admins_claimed_at", Timestamptz, {"default": None, "null": True}),
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
