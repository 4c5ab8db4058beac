"""The web process: a Starlette app with the YooKassa webhook and a health check, served by uvicorn.

It never imports aiogram; users are told about payments through :mod:`pomogator.notify`.
"""
