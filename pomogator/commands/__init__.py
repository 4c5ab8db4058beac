"""Typer sub-apps of the ``pomogator`` command line, registered in ``pomogator.cli``."""
