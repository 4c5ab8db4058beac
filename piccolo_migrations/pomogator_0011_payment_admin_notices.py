"""payment_admin_notices: what each admin was told of a payment while its notice has not reached them all, so that a
notice sent again goes only to the admins who missed it."""

import decimal
from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import Column
from piccolo.columns.column_types import BigInt, Boolean, Integer, Numeric
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T10:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "What each admin was told of a payment whose notice has not reached them all"

COLUMNS: tuple[tuple[str, type[Column], dict[str, Any]], ...] = (
    ("payment", Integer, {"default": 0, "index": True}),
    ("admin_id", BigInt, {"default": 0, "index": False}),
    ("paid", Boolean, {"default": False, "index": False}),
    ("refunded", Numeric, {"default": decimal.Decimal("0"), "digits": (12, 2), "index": False}),
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    manager.add_table(class_name="PaymentAdminNotice", tablename="payment_admin_notices", schema=None, columns=None)
    for name, column_class, own in COLUMNS:
        manager.add_column(
            table_class_name="PaymentAdminNotice",
            tablename="payment_admin_notices",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={
                **own,
                "null": False,
                "primary_key": False,
                "unique": False,
                "index_method": IndexMethod.btree,
                "choices": None,
                "db_column_name": None,
                "secret": False,
            },
            schema=None,
        )
    return manager
