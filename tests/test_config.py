"""Reading the settings: the environment over ``.env``, names in any case, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pomogator.config import (
    Settings,
    load_settings,
    read_variable,
    unknown_variable_warning,
    unknown_variables,
    url_passwords,
)
from pomogator.container import make_llm_client
from pomogator.errors import ConfigError
from tests.conftest import TEST_API_KEY
from tests.fakes.openai_server import FakeLLM, Reply


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``.env`` in the working directory, read as in a process of its own (the session reads none)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pomogator.config.ENV_FILE", Path(".env"))
    return tmp_path / ".env"


def test_env_file_values_are_read_and_the_environment_wins(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file.write_text(
        "# a comment\n"
        "POMOGATOR_WEB_PORT=9000\n"
        "export POMOGATOR_APP_TITLE='Помогатор тест'\n"
        'POMOGATOR_SUPPORT_CONTACT="@help"\n'
        "POMOGATOR_ROLE_MAX_CHARS=100\n"
        "OTHER_APP_SETTING=ignored\n"
        "POMOGATOR_NO_SUCH_SETTING=ignored too (reported)\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("POMOGATOR_ROLE_MAX_CHARS", "300")
    settings = load_settings()
    assert settings.web_port == 9000
    assert settings.app_title == "Помогатор тест"
    assert settings.support_contact == "@help"
    assert settings.role_max_chars == 300


def test_names_are_case_insensitive_and_env_file_values_expand_variables(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_HOST", "db.internal")
    env_file.write_text("POMOGATOR_DATABASE_URL=postgresql://app@${DB_HOST}/pomogator\n", encoding="utf-8")
    monkeypatch.setenv("pomogator_log_json", "true")
    settings = load_settings()
    assert settings.database_url == "postgresql://app@db.internal/pomogator"
    assert settings.log_json is True


def test_one_variable_is_read_as_the_settings_are(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``read_variable`` (what is read before or without the settings): ``.env`` too, the environment first, any
    case, an empty or blank value as not set."""
    env_file.write_text("pomogator_heartbeat_file=/from/env-file\nPOMOGATOR_DEBUG=1\n", encoding="utf-8")
    assert read_variable("POMOGATOR_HEARTBEAT_FILE") == "/from/env-file"
    monkeypatch.setenv("POMOGATOR_HEARTBEAT_FILE", "/from/environment")
    assert read_variable("POMOGATOR_HEARTBEAT_FILE") == "/from/environment"
    monkeypatch.setenv("POMOGATOR_HEARTBEAT_FILE", " ")
    assert read_variable("POMOGATOR_HEARTBEAT_FILE") == "/from/env-file"
    monkeypatch.setenv("POMOGATOR_DEBUG", "")
    assert read_variable("POMOGATOR_DEBUG") == "1"
    assert read_variable("POMOGATOR_DATABASE_URL") is None
    assert read_variable("POMOGATOR_DEBUG", env_file=env_file.with_name("missing.env")) is None


def test_secrets_stay_secret(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_BOT_TOKEN", "123:very-secret")
    settings = load_settings()
    assert settings.bot_token is not None and settings.bot_token.get_secret_value() == "123:very-secret"
    assert "very-secret" not in repr(settings)


def test_without_env_file_defaults_apply(env_file: Path) -> None:
    settings = load_settings()
    assert not env_file.exists()
    assert settings.database_url == "sqlite:///pomogator.sqlite3"
    assert settings.web_port == 8080
    assert settings.database_pool_size == 20
    # No made-up support handle: the texts that name one leave it out.
    assert settings.support_contact == ""


def test_the_database_pool_size_is_read_and_checked(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_DATABASE_POOL_SIZE", "5")
    assert load_settings().database_pool_size == 5
    monkeypatch.setenv("POMOGATOR_DATABASE_POOL_SIZE", "0")
    with pytest.raises(ConfigError, match=r"^POMOGATOR_DATABASE_POOL_SIZE:"):
        load_settings()


def test_zero_is_kept_where_it_means_off_or_none(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENROUTER_MAX_RETRIES", "REMINDER_INTERVAL_SECONDS", "PAYMENT_CHECK_INTERVAL_SECONDS"):
        monkeypatch.setenv(f"POMOGATOR_{name}", "0")
    monkeypatch.setenv("POMOGATOR_PRICE_MONTH_RUB", "199.50")
    settings = load_settings()
    assert (settings.openrouter_max_retries, settings.reminder_interval_seconds) == (0, 0)
    assert settings.payment_check_interval_seconds == 0
    assert str(settings.price_month_rub) == "199.50"


def test_a_bad_value_is_one_line_naming_the_variable(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_WEB_PORT", "eighty")
    with pytest.raises(ConfigError) as failed:
        load_settings()
    message = str(failed.value)
    assert message.startswith("POMOGATOR_WEB_PORT:")
    assert "\n" not in message and "eighty" not in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        # A typo here once surfaced only as a 500 for every YooKassa notification, with /healthz still 200.
        ("WEB_TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/33", "'10.0.0.0/33' is not an IP address or network"),
        ("YOOKASSA_TRUSTED_NETWORKS", "185.71.76.0/27;77.75.153.0/25", "is not an IP address or network"),
        ("WEB_PORT", "99999", "less than or equal to 65535"),
        ("TIMEZONE", "Bad/Zone", "unknown time zone 'Bad/Zone'"),
        ("TELEGRAM_WEBHOOK_SECRET", "a b", "use 1-256 characters"),
        # Checked whether or not a bot token is set, so a typo does not wait for the token to show up.
        ("ADMIN_IDS", "123456789; 987654321", "'123456789; 987654321' is not a Telegram id"),
        ("ADMIN_IDS", "@admin", "'@admin' is not a Telegram id"),
        ("ADMIN_IDS", "12, abc", "'abc' is not a Telegram id"),
        # Each once passed unchecked: 0 messages a minute answered every message with the flood notice, -1 retries
        # failed every request as an unexpected error, a timeout of -1 timed out every request, a plan of 0 days sold
        # nothing.
        ("OPENROUTER_TIMEOUT", "-1", "greater than 0"),
        ("OPENROUTER_TIMEOUT", "0", "greater than 0"),
        ("OPENROUTER_MAX_RETRIES", "-1", "greater than or equal to 0"),
        ("YOOKASSA_TIMEOUT", "0", "greater than 0"),
        ("ROLE_MAX_CHARS", "-5", "greater than 0"),
        ("FLOOD_MESSAGES_PER_MINUTE", "0", "greater than 0"),
        ("PRICE_MONTH_RUB", "-1", "greater than 0"),
        ("PRICE_YEAR_RUB", "0", "greater than 0"),
        ("PRICE_MONTH_RUB", "599.999", "no more than 2 decimal places"),
        ("MONTH_DAYS", "0", "greater than 0"),
        ("YEAR_DAYS", "-365", "greater than 0"),
        ("REMINDER_INTERVAL_SECONDS", "-1", "greater than or equal to 0"),
        # YooKassa refuses a payment whose receipt has a code off its lists, so every purchase would fail.
        ("RECEIPT_VAT_CODE", "13", "less than or equal to 12"),
        ("RECEIPT_VAT_CODE", "0", "greater than or equal to 1"),
        ("RECEIPT_TAX_SYSTEM_CODE", "7", "less than or equal to 6"),
    ],
)
def test_bad_values_are_refused_at_load_with_plain_messages(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(f"POMOGATOR_{name}", value)
    with pytest.raises(ConfigError) as failed:
        load_settings()
    message = str(failed.value)
    assert message.startswith(f"POMOGATOR_{name}: ") and expected in message
    assert "Value error" not in message and "\n" not in message


def test_admin_ids_are_read(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_ADMIN_IDS", " 123456789, -1001234567890,")
    assert load_settings().admin_id_list == (123456789, -1001234567890)


def test_database_and_redis_passwords_are_secret_values(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_DATABASE_URL", "postgresql://app:pa%2Fss%40w%23rd%3F@db:5432/app?sslmode=require")
    monkeypatch.setenv("POMOGATOR_REDIS_URL", "redis://:redis-Secret@redis:6379/0")
    monkeypatch.setenv("PGPASSWORD", "from env/PG")
    secrets = load_settings().secret_values()
    # As written in the URL (percent-encoded) and as the driver decodes it.
    assert {"pa%2Fss%40w%23rd%3F", "pa/ss@w#rd?", "redis-Secret", "from env/PG", "from%20env%2FPG"} <= set(secrets)
    # The user name and the host are not secrets.
    assert not {"app", "db", "redis"} & set(secrets)


def test_a_password_given_as_a_query_parameter_is_a_secret_value() -> None:
    settings = Settings(database_url="postgresql://app@db/app?sslmode=require&password=q%26Secret")
    assert {"q%26Secret", "q&Secret"} <= set(settings.secret_values())


# Each password has a character that ends the URL's authority, or the user info, early when not percent-encoded:
# its pieces would become the port, the database, a fragment, and drivers quote them in their errors.
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:abSECRETPW#x@127.0.0.1:5432/postgres",
        "postgresql://postgres:ab/cdSECRETPW@127.0.0.1:5432/postgres",
        "postgres://postgres:abSECRETPW?x@127.0.0.1/postgres",
        "postgresql://postgres:ab@SECRETPW@127.0.0.1/postgres",
        "postgresql://postgres:1234/SECRETPW@db/postgres",
        "postgresql://postgres:ab cd[SECRETPW]@db:x/postgres",
    ],
)
def test_a_database_url_that_does_not_read_back_is_refused_without_quoting_it(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("POMOGATOR_DATABASE_URL", url)
    with pytest.raises(ConfigError) as failed:
        load_settings()
    message = str(failed.value)
    assert message.startswith("POMOGATOR_DATABASE_URL:")
    assert "percent-encode" in message
    assert "SECRETPW" not in message and "\n" not in message


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:65536/x"),
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:abc/x"),
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432x/x"),
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:0/x"),
        ("DATABASE_URL", "postgres://127.0.0.1:/x"),
        ("DATABASE_URL", "postgresql://app:pa%2Fss@db1:5432,db2:70000/app"),
        ("DATABASE_URL", "postgresql://app@[::1]:99999/app"),
        # Whatever stands in the port's place is not quoted.
        ("DATABASE_URL", "postgresql://postgres@db:SECRETPW/postgres"),
        ("REDIS_URL", "redis://redis:123456/0"),
        ("REDIS_URL", "redis://:Secret1@redis:6379x/0"),
    ],
)
def test_a_bad_port_is_named_as_such(env_file: Path, monkeypatch: pytest.MonkeyPatch, name: str, url: str) -> None:
    monkeypatch.setenv(f"POMOGATOR_{name}", url)
    with pytest.raises(ConfigError) as failed:
        load_settings()
    assert str(failed.value) == f"POMOGATOR_{name}: the port must be a number from 1 to 65535"


def test_a_redis_url_that_does_not_read_back_is_refused(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_REDIS_URL", "redis://:ab/cdSECRETPW@redis:6379/0")
    with pytest.raises(ConfigError, match=r"^POMOGATOR_REDIS_URL:") as failed:
        load_settings()
    assert "SECRETPW" not in str(failed.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POMOGATOR_OPENROUTER_BASE_URL", "openrouter.ai/api/v1"),
        ("POMOGATOR_TELEGRAM_API_URL", "localhost:8081"),
        ("POMOGATOR_YOOKASSA_API_URL", "https:// api.yookassa.ru"),
        ("POMOGATOR_OFFER_URL", "example.com/offer"),
        ("POMOGATOR_PAYMENT_RETURN_URL", "tg://resolve?domain=bot"),
    ],
)
def test_an_address_that_is_no_web_address_is_refused_at_start(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"^{name}: not a web address: expected http:// or https:// and a host"):
        load_settings()


def test_web_addresses_as_operators_give_them_are_accepted(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_TELEGRAM_API_URL", "http://127.0.0.1:8081")
    monkeypatch.setenv("POMOGATOR_OPENROUTER_BASE_URL", "HTTPS://proxy.local/openrouter/api/v1")
    monkeypatch.setenv("POMOGATOR_APP_URL", "https://t.me/pomogator_bot")
    monkeypatch.setenv("POMOGATOR_OFFER_URL", "https://example.com/offer?v=2#terms")
    monkeypatch.setenv("POMOGATOR_PRIVACY_URL", "")  # empty: not set
    settings = load_settings()
    assert settings.telegram_api_url == "http://127.0.0.1:8081" and settings.privacy_url == ""


@pytest.mark.parametrize(
    "url", ["sqlite:///:memory:", "sqlite:///file:pomogator?mode=memory&cache=shared", "sqlite:///x?MODE=MEMORY"]
)
def test_an_in_memory_sqlite_database_is_refused(env_file: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """`db migrate` on ":memory:" migrated a database gone at exit, then failed on a missing table, advising to run
    `db migrate`, and left a ":memory:.migrate.lock" file behind."""
    monkeypatch.setenv("POMOGATOR_DATABASE_URL", url)
    with pytest.raises(ConfigError) as failed:
        load_settings()
    message = str(failed.value)
    assert message.startswith("POMOGATOR_DATABASE_URL: an in-memory SQLite database is gone when the process ends")
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pa%2Fss%40w%23rd@db:5432/app",
        "postgresql://app:a:b@db/app",
        "postgresql://app@db1:5432,db2:5433/app?target_session_attrs=read-write",
        "postgresql://app@[::1]:5432/app",
        "postgresql:///app?host=/run/postgresql",
        "sqlite:///data/odd#name@x?.sqlite3",
    ],
)
def test_well_formed_database_urls_are_accepted(env_file: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("POMOGATOR_DATABASE_URL", url)
    assert load_settings().database_url == url


@pytest.mark.parametrize("token", ["bad", "123:", ":abc", "12 3:abc", "123:abc def", "123:ab/cd"])
def test_a_malformed_bot_token_is_refused_without_quoting_it(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("POMOGATOR_BOT_TOKEN", token)
    with pytest.raises(ConfigError, match=r"^POMOGATOR_BOT_TOKEN: .*not a bot token") as failed:
        load_settings()
    assert token not in str(failed.value)


def test_an_empty_bot_token_is_just_not_set(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POMOGATOR_BOT_TOKEN", "")
    with pytest.raises(ConfigError, match=r"^POMOGATOR_BOT_TOKEN is not set"):
        load_settings().require("bot_token")


def test_every_missing_setting_is_named_at_once(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POMOGATOR_BOT_TOKEN", "POMOGATOR_OPENROUTER_API_KEY", "POMOGATOR_YOOKASSA_SHOP_ID"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    with pytest.raises(ConfigError) as failed:
        settings.require("bot_token", "openrouter_api_key", "yookassa_shop_id")
    assert str(failed.value) == (
        "POMOGATOR_BOT_TOKEN, POMOGATOR_OPENROUTER_API_KEY and POMOGATOR_YOOKASSA_SHOP_ID are not set."
    )


def test_compose_gives_the_database_password_outside_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever POSTGRES_PASSWORD holds, compose's database URL reads back as written: the password travels in
    PGPASSWORD (which asyncpg reads when the URL has none) and is redacted from there."""
    yaml = pytest.importorskip("yaml")
    password = "a/b#c@d?e:f%g+h="
    compose = (Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text()
    services = yaml.safe_load(re.sub(r"\$\{POSTGRES_PASSWORD[^}]*\}", lambda _: password, compose))["services"]
    for name in ("migrate", "bot", "web"):
        environment = services[name]["environment"]
        assert environment["PGPASSWORD"] == password, name
        monkeypatch.setenv("PGPASSWORD", environment["PGPASSWORD"])
        settings = Settings(database_url=environment["POMOGATOR_DATABASE_URL"])
        assert password in settings.secret_values()
        assert not url_passwords(settings.database_url)


@pytest.mark.parametrize(
    ("shop_id", "secret_key", "configured"),
    [("123", "s", True), ("123", "", False), ("", "s", False), (None, None, False)],
)
def test_billing_is_configured_only_with_both_yookassa_credentials(
    shop_id: str | None, secret_key: str | None, configured: bool
) -> None:
    settings = Settings(yookassa_shop_id=shop_id, yookassa_secret_key=secret_key)
    assert settings.billing_configured is configured


async def test_without_an_app_url_openrouter_gets_no_referer(fake_llm: FakeLLM) -> None:
    """The default used to be another bot's link, sent by every deployment that did not set its own."""
    assert Settings().app_url == ""
    for app_url, referer in (("", None), ("https://t.me/our_bot", "https://t.me/our_bot")):
        settings = Settings(openrouter_api_key=TEST_API_KEY, openrouter_base_url=fake_llm.base_url, app_url=app_url)
        llm = make_llm_client(settings)
        assert llm is not None
        fake_llm.enqueue(Reply(text="hi"))
        try:
            [event async for event in llm.stream("m", [{"role": "user", "content": "hi"}], 10)]
        finally:
            await llm.close()
        headers = fake_llm.requests[-1].headers
        assert headers.get("HTTP-Referer") == referer
        assert headers["X-Title"] == "Pomogator"


@pytest.mark.parametrize(
    "name", ["RECEIPT_TAX_SYSTEM_CODE", "DATABASE_POOL_SIZE", "WEB_PORT", "LOG_JSON", "PRICE_MONTH_RUB", "TIMEZONE"]
)
def test_an_empty_value_means_the_default_for_every_setting(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """As ``.env.example`` shows ``# POMOGATOR_RECEIPT_TAX_SYSTEM_CODE=``: uncommented, it is not set, as an empty
    string setting always was, not a number that fails to parse."""
    env_file.write_text(f"POMOGATOR_{name}=\n", encoding="utf-8")
    default = getattr(Settings(), name.lower())
    assert getattr(load_settings(), name.lower()) == default
    env_file.unlink()
    monkeypatch.setenv(f"POMOGATOR_{name}", "  ")
    assert getattr(load_settings(), name.lower()) == default


def test_an_empty_variable_does_not_hide_the_env_file_value(env_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file.write_text("POMOGATOR_DATABASE_POOL_SIZE=7\n", encoding="utf-8")
    monkeypatch.setenv("POMOGATOR_DATABASE_POOL_SIZE", "")
    assert load_settings().database_pool_size == 7


def test_variables_that_are_no_setting_are_found_with_what_they_may_mean(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file.write_text("POMOGATOR_YOOKASSA_SECRET=s3cr3t\nPOMOGATOR_WEB_PORT=9000\n", encoding="utf-8")
    monkeypatch.setenv("POMOGATOR_DATABASE_URI", "postgresql://u:pw@db/x")
    monkeypatch.setenv("pomogator_something_else", "1")
    # Read elsewhere, not settings: the console's, the heartbeat's, the tests' and the benchmarks'.
    for name in ("DEBUG", "HEARTBEAT_FILE", "TEST_POSTGRES_URL", "BENCH_POSTGRES_URL"):
        monkeypatch.setenv(f"POMOGATOR_{name}", "1")
    settings = load_settings()
    assert settings.unknown_variables == (
        "POMOGATOR_DATABASE_URI",
        "POMOGATOR_YOOKASSA_SECRET",
        "pomogator_something_else",
    )
    assert [unknown_variable_warning(name) for name in settings.unknown_variables] == [
        "POMOGATOR_DATABASE_URI is not a setting and is ignored; did you mean POMOGATOR_DATABASE_URL?",
        "POMOGATOR_YOOKASSA_SECRET is not a setting and is ignored; did you mean POMOGATOR_YOOKASSA_SECRET_KEY?",
        "POMOGATOR_SOMETHING_ELSE is not a setting and is ignored",
    ]


def test_the_variables_read_outside_the_settings_are_not_reported() -> None:
    from pomogator.console import DEBUG_ENV
    from pomogator.heartbeat import HEARTBEAT_ENV

    assert unknown_variables([DEBUG_ENV, HEARTBEAT_ENV, "POMOGATOR_TEST_POSTGRES_URL"]) == []


def test_the_tests_read_no_env_file_of_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ``.env`` (the README has one made in the project's directory) reaches no test run in-process."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("POMOGATOR_DEBUG=1\nPOMOGATOR_WEB_PORT=9000\n", encoding="utf-8")
    assert read_variable("POMOGATOR_DEBUG") is None
    assert load_settings().web_port != 9000
