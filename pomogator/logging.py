"""Logging set-up for entry points (kept here for ``from pomogator.logging import setup_logging``)."""

from __future__ import annotations

from pomogator.logs.setup import setup_logging

__all__ = ["setup_logging"]
