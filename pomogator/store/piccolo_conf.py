"""Piccolo's configuration module (``PICCOLO_CONF`` points here, set in code by ``pomogator.store``).

``DB`` is replaced by :func:`pomogator.store.engine.bind_engine` at run time; the value built here serves the
``piccolo`` command line when it is used by hand.
"""

from __future__ import annotations

import os
from typing import Any

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine

from pomogator.store.engine import engine_from_url

DB: Engine[Any] = engine_from_url(os.environ.get("POMOGATOR_DATABASE_URL", "sqlite:///pomogator.sqlite3"))

APP_REGISTRY = AppRegistry(apps=["pomogator.store.piccolo_app"])
