"""The web process: a Starlette app with the YooKassa webhook and a health check, served by uvicorn.

Without webhook mode it never imports aiogram: users are told about payments through :mod:`pomogator.notify`. In
webhook mode it serves the bot too (:mod:`pomogator.web.telegram_webhook`).
"""
