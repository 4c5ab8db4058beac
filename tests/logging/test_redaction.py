"""No secret reaches any sink: stderr (text and JSON) and the log table."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable

import pytest
from loguru import logger

from pomogator.config import Settings
from pomogator.logs.redact import REDACTED, Redactor
from pomogator.logs.setup import setup_logging
from tests.logging.conftest import (
    API_KEY,
    BOT_TOKEN,
    SECRETS,
    WEBHOOK_SECRET,
    YOOKASSA_SECRET,
    db_sink,
    logging_to_database,
    stored,
)


def log_everything_secret() -> None:
    logger.info("starting with token {}", BOT_TOKEN)
    logger.info("OpenRouter key is {}", API_KEY)
    logger.warning("request headers: {}", {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"})
    logger.bind(headers={"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}, token=WEBHOOK_SECRET).info("bound extras")
    with logger.contextualize(user_id=5, secret_token=WEBHOOK_SECRET, note=f"key={API_KEY}"):
        logger.info("contextualized")
    logging.getLogger("aiogram.event").warning("POST https://api.telegram.org/bot%s/sendMessage failed", BOT_TOKEN)
    try:
        raise RuntimeError(f"OpenRouter rejected {API_KEY}")
    except RuntimeError:
        logger.exception("chat failed")
    try:
        try:
            raise ValueError(f"inner with {BOT_TOKEN}")
        except ValueError as inner:
            raise KeyError("outer") from inner
    except KeyError:
        logger.exception("chained")


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


async def test_no_secret_in_stderr_or_the_table(log_settings: Settings, stderr_text: Callable[[], str]) -> None:
    async with logging_to_database(log_settings) as sinks:
        log_everything_secret()
        assert await db_sink(sinks).flush()
        rows = await stored()

    text = stderr_text()
    assert_clean(text)
    assert "starting with token ***" in text
    assert "https://api.telegram.org/bot***/sendMessage" in text
    assert "RuntimeError: OpenRouter rejected ***" in text
    assert "ValueError: inner with ***" in text

    assert len(rows) == 8
    assert_clean(json.dumps(rows, default=str))
    by_message = {row["message"]: row for row in rows}
    assert by_message["bound extras"]["context"] == {"headers": {"Authorization": REDACTED}, "token": REDACTED}
    assert by_message["contextualized"]["context"] == {"user_id": 5, "secret_token": REDACTED, "note": "key=***"}
    assert by_message["contextualized"]["telegram_id"] == 5
    assert "RuntimeError: OpenRouter rejected ***" in by_message["chat failed"]["exception"]


def test_json_lines_on_stderr_are_clean_json(log_settings: Settings) -> None:
    stream = io.StringIO()
    setup_logging(log_settings.model_copy(update={"log_json": True}), "web", stream=stream)
    log_everything_secret()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8
    records = [json.loads(line) for line in lines]
    assert_clean(stream.getvalue())
    assert {record["process"] for record in records} == {"web"}
    failed = next(record for record in records if record["message"] == "chat failed")
    assert failed["level"] == "ERROR"
    assert failed["exception"].endswith("RuntimeError: OpenRouter rejected ***")
    contextualized = next(record for record in records if record["message"] == "contextualized")
    assert contextualized["context"] == {"user_id": 5, "secret_token": REDACTED, "note": "key=***"}


def test_a_loguru_sink_added_by_anyone_gets_redacted_messages(log_settings: Settings) -> None:
    setup_logging(log_settings, "cli", stream=io.StringIO())
    seen: list[str] = []
    logger.add(lambda message: seen.append(message.record["message"] + repr(message.record["extra"])))
    log_everything_secret()
    assert seen
    assert_clean("\n".join(seen))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET https://api.telegram.org/bot123456:AAE-x_y/getUpdates", "GET https://api.telegram.org/bot***/getUpdates"),
        ("token 1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw here", "token *** here"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: ***"),
        ("{'authorization': 'Basic dXNlcjpwYXNz'}", "{'authorization': '***'}"),
        ("headers={'Proxy-Authorization': 'token xyz'}", "headers={'Proxy-Authorization': '***'}"),
        ("postgresql://pomogator:hunter2@db:5432/app", "postgresql://pomogator:***@db:5432/app"),
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        # A password with any of the characters that end a URL's authority, as written or percent-encoded.
        ("postgresql://postgres:ab#SECRET@db:5432/app", "postgresql://postgres:***@db:5432/app"),
        ("postgresql://postgres:ab/cd?SECRET@db:5432/app x", "postgresql://postgres:***@db:5432/app x"),
        ("dsn='postgres://u:p@ss@w/rd@db/app'", "dsn='postgres://u:***@db/app'"),
        ("postgresql://app:pa%2Fss%40w%23rd@db/app", "postgresql://app:***@db/app"),
        ("redis://:a#b/c?d@redis:6379/0", "redis://:***@redis:6379/0"),
        # libpq's key=value form, an environment line and a rendered mapping.
        ("host=db password=hunter2xyz dbname=app", "host=db password=*** dbname=app"),
        ("host=db password='hunter 2' dbname=app", "host=db password=*** dbname=app"),
        ("PGPASSWORD=hunter2xyz", "PGPASSWORD=***"),
        ("{'user': 'app', 'password': 'hunter2xyz'}", "{'user': 'app', 'password': '***'}"),
        ('{"db_password": "hun\\"ter2", "port": 5432}', '{"db_password": "***", "port": 5432}'),
        (
            "pay at https://yoomoney.ru/checkout/payments/v2/contract?orderId=2d-4b&x=1",
            "pay at https://yoomoney.ru/checkout/payments/v2/contract?orderId=***&x=1",
        ),
        ("https://example.com/cb?token=abc&api_key=def", "https://example.com/cb?token=***&api_key=***"),
        ("key sk-or-v1-abcdef0123456789abcdef", "key ***"),
        ("shop secret live_Ab1CdEfGhIjKlMnOpQrStUvWxYz_0123", "shop secret ***"),
    ],
)
def test_patterns(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The basic settings are documented",
        "FAILED tests/logging/test_redaction.py::test_records_from_threads_arrive_in_the_table",
        "Update id=700000001 is handled. Duration 12 ms by bot id=123456",
        "prompt_tokens=12 completion_tokens=30",
        "https://openrouter.ai/api/v1/chat/completions",
        "idempotence_key=3f1c",
        "postgresql://app@db:5432/app",
        "https://bot.example.com:8443/webhooks/telegram from 149.154.167.220",
        "{'prompt_tokens': 12, 'max_tokens': 4096}",
        "password_min_length is 8",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().text(text) == text


def test_secret_keys_in_mappings_are_redacted_but_counts_are_not() -> None:
    redacted = Redactor().mapping(
        {"bot_token": "x", "X-Telegram-Bot-Api-Secret-Token": "y", "prompt_tokens": 12, "nested": {"password": "p"}}
    )
    assert redacted == {
        "bot_token": REDACTED,
        "X-Telegram-Bot-Api-Secret-Token": REDACTED,
        "prompt_tokens": 12,
        "nested": {"password": REDACTED},
    }


def test_configured_secrets_and_their_forms(log_settings: Settings) -> None:
    redactor = Redactor.from_settings(log_settings)
    assert redactor.text(f"secret {WEBHOOK_SECRET}!") == "secret ***!"
    # The bot token's key part alone, and YooKassa's Basic credential (base64 of shop id and secret key).
    assert redactor.text(BOT_TOKEN.split(":")[1]) == REDACTED
    credential = base64.b64encode(f"123456:{YOOKASSA_SECRET}".encode()).decode()
    assert redactor.text(f"credential {credential}") == "credential ***"


def test_database_and_redis_passwords_are_redacted_wherever_they_appear() -> None:
    """Not just inside a URL: a driver may quote the password, or a piece of it, in any error."""
    settings = Settings(
        database_url="postgresql://app:pa%2Fss%40word@db:5432/app", redis_url="redis://:redis-Secret@redis:6379/0"
    )
    redactor = Redactor.from_settings(settings)
    assert redactor.text("auth failed for 'pa/ss@word'") == "auth failed for '***'"
    assert redactor.text("bad dsn pa%2Fss%40word") == "bad dsn ***"
    assert redactor.text("NOAUTH redis-Secret") == "NOAUTH ***"
