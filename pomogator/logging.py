"""Logging set-up: loguru, configured once per entry point."""

from __future__ import annotations

import sys

from loguru import logger

from pomogator.config import Settings


def setup_logging(settings: Settings, process: str) -> None:
    """Send records to stderr at the configured level (the database sink is added by the logging issue)."""
    logger.remove()
    logger.add(sys.stderr, level=settings.log_level.upper(), backtrace=False, diagnose=False)
    logger.configure(extra={"process": process})
