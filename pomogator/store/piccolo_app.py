"""Piccolo app config; the migrations ship as the ``piccolo_migrations`` package inside the wheel."""

from __future__ import annotations

from pathlib import Path

from piccolo.conf.apps import AppConfig

import piccolo_migrations
from pomogator.store.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="pomogator",
    migrations_folder_path=str(Path(piccolo_migrations.__file__).parent),
    table_classes=list(TABLES),
    migration_dependencies=[],
    commands=[],
)
