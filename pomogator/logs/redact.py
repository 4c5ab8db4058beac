"""Secret redaction for every log sink: configured secret values plus patterns that look like credentials."""

from __future__ import annotations

import base64
import re
import traceback
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loguru import Record, RecordException

    from pomogator.config import Settings

REDACTED = "***"
# Names whose values are secrets: ``bot_token``, ``X-Telegram-Bot-Api-Secret-Token``, ``password``, ``secret_key``...
SECRET_WORDS = r"(?:authorization|token|secret|secret_key|secret_token|password|passwd|api_key|apikey|cookie)"
# Shorter configured "secrets" would turn ordinary words into asterisks; they are caught by the patterns instead.
MIN_SECRET_LENGTH = 4

PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # The bot token inside Telegram API URLs: https://api.telegram.org/bot123:ABC/sendMessage
    (re.compile(r"(/bot)\d+:[\w-]+"), rf"\1{REDACTED}"),
    # A bare Telegram bot token.
    (re.compile(r"\b\d{5,}:[\w-]{30,}"), REDACTED),
    # Authorization header values in any rendering: "Authorization: Bearer x", {'authorization': 'Basic x'}.
    (
        re.compile(
            r"(?i)(\b(?:proxy-)?authorization\b['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic|token)\s+)?[^\s'\",;}\]]+"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\b([Bb]earer)\s+[\w.~+/=-]{8,}"), rf"\1 {REDACTED}"),
    (re.compile(r"\b(Basic)\s+(?=[A-Za-z+/]*[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}"), rf"\1 {REDACTED}"),
    # Credentials in URLs: postgresql://user:password@host, redis://:password@host. The password runs to the last
    # "@" before a space: one with "/", "?", "#" or "@" not percent-encoded is still all of it (a URL parser would
    # end the authority inside it, which is how its pieces leak).
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)\S*@"), rf"\1{REDACTED}@"),
    # libpq's key=value form and environment lines: password=hunter2, password='a b', PGPASSWORD=hunter2.
    (
        re.compile(r"""(?i)(\b\w*(?:password|passwd)\s*=\s*)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s'"&]+)"""),
        rf"\1{REDACTED}",
    ),
    # A secret in a rendered mapping: {'password': 'hunter2'}, "secret_key": "x" (JSON).
    (re.compile(rf"(?i)(['\"](?:[\w-]*[_-])?{SECRET_WORDS}['\"]\s*:\s*')(?:[^'\\]|\\.)*'"), rf"\1{REDACTED}'"),
    (re.compile(rf'(?i)([\'"](?:[\w-]*[_-])?{SECRET_WORDS}[\'"]\s*:\s*")(?:[^"\\]|\\.)*"'), rf'\1{REDACTED}"'),
    # Tokens in query strings, payment confirmation URLs among them.
    (
        re.compile(
            r"(?i)([?&](?:token|access_token|api_key|apikey|key|secret|password|signature|sign|orderid)=)[^&\s#'\"]+"
        ),
        rf"\1{REDACTED}",
    ),
    # OpenRouter/OpenAI-style API keys and YooKassa secret keys.
    (re.compile(r"\bsk-[\w-]{16,}"), REDACTED),
    # (Random keys mix upper case and digits, which tells them from long snake_case names such as test names.)
    (re.compile(r"\b(?:live|test)_(?=[\w-]*[A-Z])(?=[\w-]*\d)[\w-]{24,}"), REDACTED),
)


def _scoped(pattern: re.Pattern[str]) -> str:
    text = pattern.pattern
    return f"(?i:{text.removeprefix('(?i)')})" if text.startswith("(?i)") else f"(?:{text})"


# One search tells whether any pattern can match: most records contain nothing to redact.
ANY_PATTERN = re.compile("|".join(_scoped(pattern) for pattern, _ in PATTERNS))

# Mapping keys whose values are secrets whatever they look like (``bot_token``, ``X-Telegram-Bot-Api-Secret-Token``).
SECRET_KEY = re.compile(rf"(?i)(?:.*[_-])?{SECRET_WORDS}")


class Redactor:
    """Replaces secrets in text and in nested values; safe to share between threads (it is immutable)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self.secrets: tuple[str, ...] = tuple(values)
        self._exact = re.compile("|".join(re.escape(s) for s in values)) if values else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        return cls(secret_variants(settings))

    def text(self, value: str) -> str:
        if self._exact is not None:
            value = self._exact.sub(REDACTED, value)
        if ANY_PATTERN.search(value) is None:
            return value
        for pattern, replacement in PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def value(self, value: Any) -> Any:
        """A redacted copy of ``value``: strings redacted, containers copied, other objects turned into text."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            return self.mapping(value)
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        return self.text(str(value))

    def mapping(self, value: Mapping[Any, Any]) -> dict[str, Any]:
        return {
            str(key): REDACTED if SECRET_KEY.fullmatch(str(key)) and item else self.value(item)
            for key, item in value.items()
        }

    def exception(self, exception: RecordException) -> str:
        """The traceback of a logged exception as text, redacted (no local variables are ever rendered)."""
        type_, value, tb = exception
        if type_ is None:
            return ""
        lines = traceback.format_exception(type_, value, tb)
        return self.text("".join(lines)).rstrip("\n")

    def traceback(self, exception: BaseException) -> str:
        """``exception`` with its traceback (and the exceptions it was raised from) as text, redacted."""
        return self.text("".join(traceback.format_exception(exception))).rstrip("\n")

    def patch(self, record: Record) -> None:
        """A loguru patcher: redacts the message and ``extra`` before any sink sees the record.

        Exceptions are rendered and redacted by this project's sinks (see :meth:`exception`); loguru's own
        ``{exception}`` field is not used by them.
        """
        record["message"] = self.text(record["message"])
        record["extra"] = self.mapping(record["extra"])


def secret_variants(settings: Settings) -> list[str]:
    """Every configured secret, plus the forms it travels in (the token's key part, YooKassa's Basic credential)."""
    secrets = list(settings.secret_values())
    if settings.bot_token is not None:
        _, _, key = settings.bot_token.get_secret_value().partition(":")
        secrets.append(key)
    if settings.yookassa_shop_id and settings.yookassa_secret_key is not None:
        pair = f"{settings.yookassa_shop_id}:{settings.yookassa_secret_key.get_secret_value()}"
        secrets.append(base64.b64encode(pair.encode()).decode())
    return secrets
