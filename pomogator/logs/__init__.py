"""Logging: loguru set-up per process, stdlib interception, redaction, the database sink and admin alerts.

Entry points call ``pomogator.logs.setup.setup_logging(settings, process)`` once; the composition root runs
``pomogator.logs.lifecycle.database_logging(settings, database)``; code that needs an admin's attention calls
``pomogator.logs.alerts.notify(kind, text)``. Frontends bind whose request a record belongs to with
``logger.contextualize(user_id=..., chat_id=..., update_id=...)`` or ``request_id=...``; ``user_id`` (or
``telegram_id``) also fills the log table's ``telegram_id`` column.

Submodules are imported where they are used, so configuring logging does not import the database layer.
"""
