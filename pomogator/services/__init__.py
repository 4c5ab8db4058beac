"""Shared services: pure async Python that the bot, the web app and the CLI all call."""
