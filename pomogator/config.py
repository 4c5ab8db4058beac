"""Settings, read from the environment (prefix ``POMOGATOR_``) and from ``.env`` in the working directory.

``load_settings`` reads them, as pydantic-settings would (names case-insensitive, the environment over ``.env``,
``${VAR}`` expanded in ``.env``) but without it: its sources, a command-line parser among them, took ~1 MiB of every
process for a handful of plain values. An empty value counts as not set, for every setting alike
(``POMOGATOR_RECEIPT_TAX_SYSTEM_CODE=`` as ``.env.example`` shows it, or ``POMOGATOR_BOT_TOKEN=``): the value of
``.env`` or the default applies. A ``POMOGATOR_*`` name that is no setting (a typo) is reported, with the setting it
may have meant (``pomogator.servers.settings_for``).
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from pomogator.errors import ConfigError

ENV_PREFIX = "POMOGATOR_"
ENV_FILE = Path(".env")
# ``POMOGATOR_*`` variables that are not settings: read by the console (``POMOGATOR_DEBUG``) and the heartbeat, as
# settings are (``read_variable``: ``.env`` too), and by the tests and benchmarks. Any other name that is no setting
# is reported as unknown.
OTHER_VARIABLES = frozenset({"DEBUG", "HEARTBEAT_FILE", "TEST_POSTGRES_URL", "BENCH_POSTGRES_URL"})

# What taking payments needs (``Settings.billing_configured``, ``Settings.require``).
YOOKASSA_SETTINGS = ("yookassa_shop_id", "yookassa_secret_key")
DEFAULT_YOOKASSA_NETWORKS = (
    "185.71.76.0/27,185.71.77.0/27,77.75.153.0/25,77.75.156.11,77.75.156.35,77.75.154.128/25,2a02:5180::/32"
)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# What Telegram accepts as a webhook secret token.
WEBHOOK_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
# The webhook secret is the one check on who may post updates (``pomogator.web.telegram_webhook``): the commands
# that use it refuse a shorter one, which could be guessed (``Settings.require_strong_webhook_secret``).
MIN_WEBHOOK_SECRET_LENGTH = 32
# A bot token as @BotFather gives it: the bot's id, a colon, the key.
BOT_TOKEN_RE = re.compile(r"[0-9]+:[A-Za-z0-9_-]+")
# A user's id, or a group's (negative).
TELEGRAM_ID_RE = re.compile(r"-?[0-9]+")
POSTGRES_SCHEMES = ("postgresql", "postgres")
# A URL's authority ("user:password@host:port") ends at the first of these, as every URL parser reads it.
AUTHORITY_END = re.compile(r"[/?#]")
PORT_RE = re.compile(r"[0-9]{1,5}")
# What a URL's user info may hold as it is (RFC 3986); anything else should have been percent-encoded.
USERINFO_RE = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*")
# SQLite's in-memory database: ":memory:", or a URI's "mode=memory".
IN_MEMORY_SQLITE = re.compile(r"sqlite:///(?::memory:|.*[?&]mode=memory(?:&|$))", re.IGNORECASE)
PASSWORD_PARAMETER = re.compile(r"[?&]password=([^&#]*)")
UNENCODED_URL = (
    "cannot be read as a URL: percent-encode special characters in the user name and password "
    "(/ as %2F, @ as %40, # as %23, ? as %3F, : as %3A, % as %25)"
)
BAD_PORT = "the port must be a number from 1 to 65535"
# An http(s) address with a host, without spaces (the settings that name a web page or an API's base).
WEB_ADDRESS_RE = re.compile(r"https?://(?:[^\s/?#@]+@)?[^\s/?#@]+(?:[/?#]\S*)?", re.IGNORECASE)
WEB_ADDRESS_EXAMPLES = {
    "telegram_api_url": "https://api.telegram.org",
    "openrouter_base_url": "https://openrouter.ai/api/v1",
    "yookassa_api_url": "https://api.yookassa.ru/v3",
}


def url_authority(url: str) -> tuple[str, str, str]:
    """The user info, hosts and the rest of ``scheme://user:password@host:port/rest`` (empty strings when absent).

    Read as a URL parser reads it: the authority ends at the first ``/``, ``?`` or ``#``, the user info at the last
    ``@`` in it. A password with one of those characters not percent-encoded ends the authority early.
    """
    _, found, rest = url.partition("://")
    if not found:
        return "", "", ""
    authority = AUTHORITY_END.split(rest, maxsplit=1)[0]
    userinfo, _, hosts = authority.rpartition("@")
    return userinfo, hosts, rest[len(authority) :]


def check_url(url: str) -> None:
    """Raise ValueError when ``url`` would be read differently from what was meant, which happens when a password
    holds ``/``, ``?``, ``#`` or ``@`` not percent-encoded: its pieces would become the port, the database name or
    a fragment, and drivers quote them in their errors. Also when a port is not one. The message never quotes the
    URL."""
    userinfo, hosts, rest = url_authority(url)
    if "@" in userinfo or "@" in rest or "#" in rest:
        raise ValueError(UNENCODED_URL)
    for host in hosts.split(","):
        # "[::1]:5432", "db:5432", "db": what follows the host (its closing bracket, for IPv6) is ":port".
        after_host = host.rpartition("]")[2] if host.startswith("[") else host
        _, colon, port = after_host.partition(":")
        if colon and not (PORT_RE.fullmatch(port) and 1 <= int(port) <= 65535):
            # A port typo (":65536", ":5432x") is just that, unless the user info holds characters that should
            # have been percent-encoded.
            raise ValueError(BAD_PORT if USERINFO_RE.fullmatch(userinfo) else UNENCODED_URL)


def _check_url_setting(url: str) -> None:
    try:
        check_url(url)
    except ValueError as exc:
        raise PydanticCustomError("url", str(exc)) from None


def url_passwords(url: str | None) -> list[str]:
    """The password in ``url`` in each form it may be seen in, as written (percent-encoded) and decoded: in the user
    info, and in a ``password`` query parameter (which asyncpg reads too)."""
    if not url:
        return []
    userinfo, _, rest = url_authority(url)
    written = [userinfo.partition(":")[2], *PASSWORD_PARAMETER.findall(rest)]
    return [form for raw in written if raw for form in (raw, unquote(raw))]


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """Parse comma-separated bare IPs and CIDRs."""
    networks: list[IPNetwork] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{item!r} is not an IP address or network") from None
    return tuple(networks)


def parse_ids(value: str) -> tuple[int, ...]:
    """Parse comma-separated Telegram ids."""
    ids: list[int] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        if not TELEGRAM_ID_RE.fullmatch(item):
            raise ConfigError(f"{item!r} is not a Telegram id: give numeric ids separated by commas")
        ids.append(int(item))
    return tuple(ids)


class Settings(BaseModel):
    """The settings; ``Settings(**values)`` takes them as given, ``load_settings()`` from the environment."""

    model_config = ConfigDict(extra="ignore")
    # The ``POMOGATOR_*`` names ``load_settings`` found that are no setting (see ``unknown_variables`` and
    # ``unknown_variable_warning``).
    _unknown_variables: tuple[str, ...] = PrivateAttr(default=())
    # The lines of the ``.env`` file ``load_settings`` had to skip (see ``env_file_problems``).
    _env_file_problems: tuple[str, ...] = PrivateAttr(default=())

    database_url: str = "sqlite:///pomogator.sqlite3"
    # PostgreSQL connections a process may open (on demand; idle ones close after a few minutes). Under load a
    # message waits for a free connection for each of its statements; 20 kept waits short at ~300 messages/s.
    database_pool_size: int = Field(default=20, ge=1)
    # How long requests wait for a PostgreSQL server that refuses connections (a restart, a failover) before users
    # are told the database is unavailable.
    database_reconnect_seconds: float = Field(default=15.0, ge=0)
    bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_secret: SecretStr | None = None
    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openrouter_timeout: float = Field(default=120.0, gt=0)
    openrouter_max_retries: int = Field(default=1, ge=0)
    # Sent to OpenRouter as HTTP-Referer, to attribute requests to this app; empty: no such header.
    app_url: str = ""
    app_title: str = "Pomogator"
    models_file: Path | None = None
    timezone: str = "Europe/Moscow"
    # Shown to users (the bot's description, /help, error messages) as is; empty: those texts name no contact.
    support_contact: str = ""
    redis_url: str | None = None
    # Every key this deployment keeps in Redis starts with this prefix (several deployments can share a server).
    redis_key_prefix: str = "pomogator"
    # A chat's turn held in Redis lapses this long after its instance stops renewing it (the instance died).
    redis_lock_ttl_seconds: float = Field(default=15.0, gt=0)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    web_trusted_proxies: str = ""
    role_max_chars: int = Field(default=2000, gt=0)
    flood_messages_per_minute: int = Field(default=20, gt=0)
    # How long the bot waits for the next part of an album, a split long text or a forward (and for a forward after
    # a typed text, its comment) before answering what came.
    gather_window_seconds: float = Field(default=0.8, gt=0, le=10)

    yookassa_shop_id: str | None = None
    yookassa_secret_key: SecretStr | None = None
    yookassa_api_url: str = "https://api.yookassa.ru/v3"
    yookassa_timeout: float = Field(default=15.0, gt=0)
    yookassa_trusted_networks: str = DEFAULT_YOOKASSA_NETWORKS
    # Where the payer returns from YooKassa's page; empty: the bot's own t.me link.
    payment_return_url: str = ""
    # Kopecks at most: YooKassa takes amounts to two decimal places.
    price_month_rub: Decimal = Field(default=Decimal(599), gt=0, decimal_places=2)
    price_year_rub: Decimal = Field(default=Decimal(1999), gt=0, decimal_places=2)
    month_days: int = Field(default=30, gt=0)
    year_days: int = Field(default=365, gt=0)
    offer_url: str = ""
    privacy_url: str = ""
    admin_ids: str = ""
    receipt_enabled: bool = False
    # YooKassa's code lists: VAT rates 1-12 (11 and 12 are 2026's 22 %), tax systems 1-6.
    receipt_vat_code: int = Field(default=1, ge=1, le=12)
    receipt_tax_system_code: int | None = Field(default=None, ge=1, le=6)
    # How often the bot and the web app look for premium ending within three days to remind about it; 0 turns it off.
    reminder_interval_seconds: float = Field(default=3600.0, ge=0)
    # How often the bot and the web app ask YooKassa about payments left pending over 10 minutes (in case their
    # notification was lost) and about refunds it answered as pending, and send a payer's notice that did not go out
    # again; 0 turns it off.
    payment_check_interval_seconds: float = Field(default=600.0, ge=0)

    log_level: str = "INFO"
    log_json: bool = False
    log_db_level: str = "INFO"
    # The bot and the web app delete stored log records older than this many days, once an hour; 0 keeps them all.
    log_db_retention_days: int = Field(default=30, ge=0)

    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # How often the servers give memory freed after a burst of work back to the system (``pomogator.memory``); 0: never.
    memory_trim_seconds: float = Field(default=60.0, ge=0)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("timezone", "unknown time zone {zone}", {"zone": repr(value)}) from None
        return value

    @field_validator("web_trusted_proxies", "yookassa_trusted_networks")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        # Read at start, not at the first notification: a typo would otherwise answer every one with a 500.
        try:
            parse_networks(value)
        except ConfigError as exc:
            raise PydanticCustomError("networks", "{reason}", {"reason": str(exc)}) from None
        return value

    @field_validator("admin_ids")
    @classmethod
    def _valid_admin_ids(cls, value: str) -> str:
        # Read at start whether or not a bot token is set: otherwise a typo shows up only once the token is added,
        # as every command failing without naming the setting.
        try:
            parse_ids(value)
        except ConfigError as exc:
            raise PydanticCustomError("admin_ids", "{reason}", {"reason": str(exc)}) from None
        return value

    # These raise PydanticCustomError: its message is shown as it is, without pydantic's "Value error, ".

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str) -> str:
        if value.partition("://")[0].lower() in POSTGRES_SCHEMES:
            _check_url_setting(value)
        if IN_MEMORY_SQLITE.match(value):
            raise PydanticCustomError(
                "database_url",
                "an in-memory SQLite database is gone when the process ends, and every process has one of its own: "
                "give a file, e.g. sqlite:///pomogator.sqlite3",
            )
        return value

    @field_validator(
        "telegram_api_url",
        "openrouter_base_url",
        "yookassa_api_url",
        "app_url",
        "payment_return_url",
        "offer_url",
        "privacy_url",
    )
    @classmethod
    def _valid_web_address(cls, value: str, info: ValidationInfo) -> str:
        # A typo would show up only at the first request (or as a link Telegram refuses), far from the setting.
        if value and not WEB_ADDRESS_RE.fullmatch(value):
            example = WEB_ADDRESS_EXAMPLES.get(info.field_name or "", "https://example.com/page")
            reason = "not a web address: expected http:// or https:// and a host, e.g. {example}"
            raise PydanticCustomError("url", reason, {"example": example})
        return value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        if value:
            _check_url_setting(value)
        return value

    @field_validator("bot_token")
    @classmethod
    def _valid_bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        # aiogram would refuse it with a traceback deep in start-up; the message never quotes the token.
        if value is not None and value.get_secret_value() and not BOT_TOKEN_RE.fullmatch(value.get_secret_value()):
            raise PydanticCustomError(
                "bot_token", "not a bot token: expected the bot's id, a colon and the key, as @BotFather gives it"
            )
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _valid_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and not WEBHOOK_SECRET_RE.fullmatch(value.get_secret_value()):
            raise PydanticCustomError("webhook_secret", "use 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @property
    def webhook_mode(self) -> bool:
        """Telegram delivers updates to the web app (``POST /webhooks/telegram``); nothing polls."""
        secret = self.telegram_webhook_secret
        return secret is not None and bool(secret.get_secret_value())

    @property
    def billing_configured(self) -> bool:
        """Payments are taken: the YooKassa shop id and secret key are both set. Without them the bot answers that
        premium cannot be bought yet and the web app serves no YooKassa webhook and checks no payments."""
        return not any(_unset(getattr(self, name)) for name in YOOKASSA_SETTINGS)

    @property
    def unknown_variables(self) -> tuple[str, ...]:
        """The ``POMOGATOR_*`` variables of the environment and ``.env`` that are no setting, as written."""
        return self._unknown_variables

    @property
    def env_file_problems(self) -> tuple[str, ...]:
        """What could not be read of the ``.env`` file, a line each (never its text: it may hold a secret)."""
        return self._env_file_problems

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def admin_id_list(self) -> tuple[int, ...]:
        return parse_ids(self.admin_ids)

    @cached_property
    def yookassa_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.yookassa_trusted_networks)

    @cached_property
    def trusted_proxies(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.web_trusted_proxies)

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every missing setting among ``names``, so they are fixed in one go."""
        missing = [f"{ENV_PREFIX}{name.upper()}" for name in names if _unset(getattr(self, name))]
        if len(missing) == 1:
            raise ConfigError(f"{missing[0]} is not set.")
        if missing:
            raise ConfigError(f"{', '.join(missing[:-1])} and {missing[-1]} are not set.")

    def require_strong_webhook_secret(self) -> None:
        """Raise ConfigError when the webhook secret is set but shorter than ``MIN_WEBHOOK_SECRET_LENGTH``. Checked
        by the commands that use it (``run web``, ``bot set-webhook``), not with the other settings: the rest (``db
        migrate`` of an upgrade among them) run while a secret from before the rule is replaced."""
        secret = self.telegram_webhook_secret
        if secret is not None and 0 < len(secret.get_secret_value()) < MIN_WEBHOOK_SECRET_LENGTH:
            raise ConfigError(
                f"POMOGATOR_TELEGRAM_WEBHOOK_SECRET is too short to be safe: use at least {MIN_WEBHOOK_SECRET_LENGTH} "
                "characters (`openssl rand -hex 32` makes one) and register it with `pomogator bot set-webhook`."
            )

    def secret_values(self) -> list[str]:
        """Every secret value configured, for log redaction: the API secrets and the passwords of the database and
        Redis, in their URLs or in ``PGPASSWORD`` (asyncpg's password when the URL has none, as compose passes it)."""
        secrets = [self.bot_token, self.openrouter_api_key, self.yookassa_secret_key, self.telegram_webhook_secret]
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        values += url_passwords(self.database_url) + url_passwords(self.redis_url)
        pgpassword = os.environ.get("PGPASSWORD")
        if pgpassword:
            values += [pgpassword, quote(pgpassword, safe="")]
        return values


def _unset(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, SecretStr) and not value.get_secret_value())


def environment_variables(env_file: Path | None = None) -> dict[str, str]:
    """The ``POMOGATOR_*`` variables of ``env_file`` (if it exists; by default ``ENV_FILE``, as it is when called)
    and the environment, which wins, by name as written. Empty values are left out, in either place: they count as
    not set."""
    merged: dict[str, str] = {}
    env_file = ENV_FILE if env_file is None else env_file
    if env_file.is_file():
        from dotenv import dotenv_values

        # python-dotenv would print its own line for a line it cannot read, before logging is set up and without
        # the file's name: ``env_file_problems`` says it instead.
        dotenv_logger = logging.getLogger("dotenv.main")
        disabled, dotenv_logger.disabled = dotenv_logger.disabled, True
        try:
            merged.update(_set_variables(dotenv_values(env_file, encoding="utf-8")))
        finally:
            dotenv_logger.disabled = disabled
    # An empty variable in the environment does not hide the value of ``.env``: both mean "not set".
    merged.update(_set_variables(os.environ))
    return merged


def env_file_problems(env_file: Path | None = None) -> list[str]:
    """One line for each line of ``env_file`` (by default ``ENV_FILE``) that is not ``NAME=value`` and was skipped."""
    env_file = ENV_FILE if env_file is None else env_file
    if not env_file.is_file():
        return []
    from dotenv.parser import parse_stream

    with env_file.open(encoding="utf-8", errors="replace") as stream:
        lines = [binding.original.line for binding in parse_stream(stream) if binding.error]
    return [f"{env_file}, line {line}: not NAME=value (a missing = or an unclosed quote), skipped" for line in lines]


def read_variable(name: str, env_file: Path | None = None) -> str | None:
    """One ``POMOGATOR_*`` variable read as the settings are (the environment over ``env_file``, the name in any
    case, an empty value as not set), for what is read before or without the settings; None when it is not set."""
    # The environment's, when both have it: it comes last, as in ``load_settings``.
    return {key.upper(): value for key, value in environment_variables(env_file).items()}.get(name.upper())


def _set_variables(variables: Mapping[str, str | None]) -> dict[str, str]:
    """The ``POMOGATOR_*`` variables of ``variables`` that have a value (not empty, not only blanks)."""
    return {
        key: value
        for key, value in variables.items()
        if key.upper().startswith(ENV_PREFIX) and value is not None and value.strip()
    }


def unknown_variables(names: Iterable[str]) -> list[str]:
    """The names among ``names`` (``POMOGATOR_*`` variables) that are neither a setting nor one of
    ``OTHER_VARIABLES``."""
    known = set(Settings.model_fields) | {name.lower() for name in OTHER_VARIABLES}
    return sorted(name for name in names if name[len(ENV_PREFIX) :].lower() not in known)


def unknown_variable_warning(name: str) -> str:
    """One line about ``name``, a ``POMOGATOR_*`` variable that is no setting, with the setting it may have meant.
    Never the value: it may be a secret."""
    suffix = name[len(ENV_PREFIX) :].upper()
    settings = [field.upper() for field in Settings.model_fields]
    close = difflib.get_close_matches(suffix, settings, n=1, cutoff=0.6)
    hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
    return f"{ENV_PREFIX}{suffix} is not a setting and is ignored{hint}"


def load_settings(env_file: Path | None = None) -> Settings:
    """Build settings once per process, turning validation errors into a one-line ConfigError."""
    from pydantic import ValidationError

    variables = environment_variables(env_file)
    values = {key[len(ENV_PREFIX) :].lower(): value for key, value in variables.items()}
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(f"{name}: {first['msg']}") from None
    settings._unknown_variables = tuple(unknown_variables(variables))
    settings._env_file_problems = tuple(env_file_problems(env_file))
    return settings
