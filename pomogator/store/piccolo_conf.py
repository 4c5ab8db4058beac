"""Piccolo's configuration module (``PICCOLO_CONF`` points here, set in code by ``pomogator.store``).

``DB`` is replaced by :func:`pomogator.store.engine.bind_engine` at run time; the value built here serves the
``piccolo`` command line when it is used by hand. It reads ``POMOGATOR_DATABASE_URL`` as the settings do: from the
environment or ``.env``, an empty value meaning the default (this module is imported while a process migrates, and
an empty variable must not fail it).
"""

from __future__ import annotations

from typing import Any

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine

from pomogator.config import ENV_PREFIX, Settings, read_variable
from pomogator.store.engine import engine_from_url

DB: Engine[Any] = engine_from_url(
    read_variable(f"{ENV_PREFIX}DATABASE_URL") or Settings.model_fields["database_url"].get_default()
)

APP_REGISTRY = AppRegistry(apps=["pomogator.store.piccolo_app"])
