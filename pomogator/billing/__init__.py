"""Payments: the typed YooKassa wrapper, its data types, and the billing texts shared by the bot and the web app.

Importing this package does not import the ``yookassa`` SDK; only :mod:`pomogator.billing.yookassa` does.
"""
