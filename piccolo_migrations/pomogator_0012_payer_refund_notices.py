"""payments.payer_told_refunded and payments.payer_refund_claimed_at: the payer's notice of a refund is owed until
sent, like the admins', so the periodic check sends one that did not go out. No payment has a claim yet, so none of
the refunds recorded before is told again (the first refund recorded after marks them told)."""

import decimal
from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import Column
from piccolo.columns.column_types import Numeric, Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T10:00:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "Of how much of each payment's refunds the payer was told, and who is telling them"

COLUMNS: tuple[tuple[str, type[Column], dict[str, Any]], ...] = (
    ("payer_told_refunded", Numeric, {"default": decimal.Decimal("0"), "digits": (12, 2), "null": False}),
    ("payer_refund_claimed_at", Timestamptz, {"default": None, "null": True}),
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
