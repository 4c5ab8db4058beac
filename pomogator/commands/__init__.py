"""Typer sub-apps of the ``pomogator`` command line, registered in ``pomogator.cli``, and the bounds of the
numbers commands take: a value past them is refused as bad input, not met deep down as an overflow."""

# A person's Telegram id: positive, and a signed 64-bit integer as the database stores it.
TELEGRAM_ID_MIN = 1
TELEGRAM_ID_MAX = 2**63 - 1
# The most rows a listing shows.
MAX_ROWS = 1_000_000
# The most days of premium granted at once (about a century).
MAX_DAYS = 36_500
