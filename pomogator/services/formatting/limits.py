"""Telegram's limits on one message."""

# A message's text, in UTF-16 units.
TELEGRAM_MESSAGE_LIMIT = 4096
# Telegram keeps at most this many entities (formatted spans: a bold word, a link, a code block, a quote) in one
# message and silently drops the formatting of the rest: the text arrives, its later bold, code and links do not.
TELEGRAM_ENTITY_LIMIT = 100
