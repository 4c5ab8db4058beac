"""The ``pomogator`` command line: database, administration, a terminal chat, and the servers.

Heavy frontends (aiogram, uvicorn) are imported inside the commands that run them, so ``pomogator --help`` and the
admin commands start fast. The console entry point is :mod:`pomogator.console`; it starts the servers themselves
(:mod:`pomogator.servers`) without this module.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from pomogator import cli_output, servers
from pomogator.commands import (
    MARKUP_MODE,
    MAX_DAYS,
    MAX_ROWS,
    TELEGRAM_ID_MAX,
    TELEGRAM_ID_MIN,
    App,
    confirm,
    sub_app,
    unwrap_help,
)
from pomogator.servers import settings_for

T = TypeVar("T")

app = App(
    name="pomogator",
    help="Pomogator: a Telegram assistant for many LLMs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=MARKUP_MODE,
)
db_app = sub_app("Database commands.")
user_app = sub_app("Manage users.")
models_app = sub_app("The models catalog.")
run_app = sub_app("Run a server process.")
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
app.add_typer(models_app, name="models")
app.add_typer(run_app, name="run")


def _show_version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        print(f"pomogator {version('pomogator')}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Pomogator: a Telegram assistant for many LLMs."""


UserId = Annotated[
    int, typer.Argument(metavar="TELEGRAM_ID", min=TELEGRAM_ID_MIN, max=TELEGRAM_ID_MAX, help="Telegram user id.")
]


def with_services(fn: Callable[..., Awaitable[T]], *needs: str) -> T:
    """Run ``fn(services)`` inside the composition root, on a fresh event loop, for an admin command.

    The database is used as it is, on SQLite as on PostgreSQL: one that does not exist, or lacks migrations of this
    version, is a ConfigError naming `pomogator db migrate`. An admin command run in the wrong directory, or without
    the deployment's settings, would otherwise act on a new empty database and report success; and one run on a file
    that is not Pomogator's, or after an upgrade, would migrate it unasked, with no backup taken (only the servers and
    the chat migrate an SQLite file by themselves)."""
    from pomogator.container import build_services

    settings = settings_for(*needs)
    require_database_file(settings.database_url)

    async def main() -> T:
        async with build_services(settings, migrate=False) as services:
            return await fn(services)

    return asyncio.run(main())


def require_database_file(url: str) -> None:
    """Raises ConfigError when ``url`` is an SQLite file that does not exist."""
    from pomogator.errors import ConfigError
    from pomogator.store.engine import sqlite_path

    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise ConfigError(
            f"No database at {path}: set POMOGATOR_DATABASE_URL to the deployment's, or create this one with "
            "`pomogator db migrate`."
        )


# --- db ----------------------------------------------------------------------------------------------------


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending database migrations (safe to run again)."""
    from pomogator.store.engine import open_database, shipped_migrations

    settings = settings_for()

    async def main() -> list[str]:
        async with open_database(settings.database_url, migrate=False) as database:
            return await database.migrate()

    cli_output.notice(migration_summary(shipped_migrations(), asyncio.run(main())))


def migration_summary(shipped: dict[str, str], applied_now: list[str]) -> str:
    """What `db migrate` did, from this version's migrations (``{ID: name}``) and the IDs it applied."""

    def count(n: int) -> str:
        return f"{n} migration{'' if n == 1 else 's'}"

    if not applied_now:
        return f"Nothing to do: all {count(len(shipped))} of this version are applied."
    names = ", ".join(shipped.get(migration, migration) for migration in applied_now)
    before = len(shipped) - len(applied_now)
    return f"{count(before)} applied before, {len(applied_now)} applied now: {names}."


@db_app.command("status")
def db_status() -> None:
    """List this version's migrations and whether the database has them, and any it has that this version does not
    know (a newer version applied them); exits 1 when some are not applied, or unknown."""
    from pomogator.store.engine import open_database, pending_of, shipped_migrations, unknown_migrations

    settings = settings_for()
    require_database_file(settings.database_url)

    async def main() -> set[str]:
        async with open_database(settings.database_url, migrate=False) as database:
            return await database.applied_migrations()

    applied = asyncio.run(main())
    shipped = shipped_migrations()
    unknown = unknown_migrations(applied)
    rows = [(name, "applied" if id_ in applied else "pending") for id_, name in shipped.items()]
    rows += [(id_, "unknown to this version") for id_ in unknown]
    cli_output.print_table("Migrations", ["migration", "status"], rows)
    pending = pending_of(applied)
    if unknown:
        cli_output.error(
            f"{len(unknown)} applied by a newer version of Pomogator: run that version, or restore the dump taken "
            "before it was installed."
        )
    elif pending:
        cli_output.error(f"{len(pending)} not applied: run `pomogator db migrate`.")
    if unknown or pending:
        raise typer.Exit(1)


# --- user --------------------------------------------------------------------------------------------------


@user_app.command("show")
def user_show(
    telegram_id: UserId,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
) -> None:
    """Show a user's model, role, premium status and today's requests."""
    from pomogator.container import Services

    async def fn(services: Services) -> None:
        profile = await services.users.profile(telegram_id)
        account = profile.account
        until = account.premium_until.astimezone(services.settings.tz).isoformat() if account.premium_until else None
        data = {
            "telegram_id": account.telegram_id,
            "model": account.model.id,
            "role": account.role,
            "premium": account.premium,
            "premium_until": until,
            "requests_today": profile.requests_today,
        }
        if as_json:
            sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
            return
        # For reading: yes / no, and the time as the other commands show it.
        shown = {
            **data,
            "premium": "yes" if account.premium else "no",
            "premium_until": f"{account.premium_until.astimezone(services.settings.tz):%Y-%m-%d %H:%M %Z}"
            if account.premium_until
            else None,
        }
        cli_output.print_table(
            f"User {account.telegram_id}",
            ["field", "value"],
            [(key, "—" if value is None else value) for key, value in shown.items()],
        )

    with_services(fn)


@user_app.command("list")
def user_list(
    limit: Annotated[int, typer.Option(metavar="N", min=1, max=MAX_ROWS, help="Show at most this many users.")] = 1000,
) -> None:
    """List users with their model and premium status, newest first."""
    from pomogator.container import Services

    async def fn(services: Services) -> None:
        tz = services.settings.tz
        rows = [
            (
                a.telegram_id,
                a.username or "",
                a.first_name,
                a.model.id,
                a.premium_until.astimezone(tz).strftime("%Y-%m-%d %H:%M") if a.premium_until else "",
                a.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            )
            for a in await services.users.list(limit + 1)
        ]
        cli_output.print_table(
            "Users", ["telegram_id", "username", "name", "model", "premium until", "since"], rows[:limit]
        )
        if len(rows) > limit:
            cli_output.notice(f"Showing the newest {limit} user{'' if limit == 1 else 's'}; --limit for more.")

    with_services(fn)


@user_app.command("grant-premium")
def user_grant_premium(
    telegram_id: UserId,
    days: Annotated[
        int, typer.Option("--days", metavar="DAYS", min=1, max=MAX_DAYS, help="How many days of premium to add.")
    ],
) -> None:
    """Give a user premium for N days (extends a running subscription; creates the user if absent)."""
    from pomogator.container import Services

    async def fn(services: Services) -> None:
        until, created = await services.users.grant_premium(telegram_id, days)
        local = until.astimezone(services.settings.tz)
        if created:
            cli_output.notice(f"User {telegram_id} had never written to the bot: created.")
        cli_output.notice(f"User {telegram_id} has premium until {local:%Y-%m-%d %H:%M %Z}.")

    with_services(fn)


@user_app.command("revoke-premium")
def user_revoke_premium(telegram_id: UserId) -> None:
    """End a user's premium now."""
    from pomogator.container import Services

    async def fn(services: Services) -> None:
        await services.users.get(telegram_id)
        ended = await services.subscriptions.revoke(telegram_id)
        cli_output.notice(f"Premium of {telegram_id} ended." if ended else f"User {telegram_id} had no premium.")

    with_services(fn)


@user_app.command("delete")
def user_delete(
    telegram_id: UserId,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Do not ask for confirmation. Needed when stdin is not a terminal (scripts, cron, pipes)."
        ),
    ] = False,
) -> None:
    """Erase a user's data: dialogs, usage, subscriptions and logs. Payments are kept, unlinked from the person.

    Data stored under an id that has no account (log records, a subscription) is erased too, and said so."""
    from pomogator.container import Services
    from pomogator.services.users import StoredData

    def not_found() -> typer.Exit:
        cli_output.error(f"User {telegram_id} not found: nothing is stored under this id.")
        return typer.Exit(1)

    if not yes:

        async def look(services: Services) -> StoredData:
            return await services.users.stored(telegram_id)

        # Asked only about what is there: a mistyped id is said at once, not after a "y".
        stored = with_services(look)
        if not stored:
            raise not_found()
        if stored.account:
            confirm(f"Erase all data of user {telegram_id}?", f"Not erasing user {telegram_id}")
        else:
            confirm(
                f"User {telegram_id} has no account, but {stored.describe()} under this id: erase it?",
                f"Not erasing user {telegram_id}",
            )

    async def erase(services: Services) -> StoredData:
        return await services.users.erase(telegram_id)

    erased = with_services(erase)
    if erased.account:
        cli_output.notice(f"User {telegram_id} erased.")
    elif erased:
        cli_output.notice(
            f"User {telegram_id} had no account; erased what was stored under the id: {erased.describe()}."
        )
    else:
        raise not_found()


# --- models ------------------------------------------------------------------------------------------------


@models_app.command("list")
def models_list() -> None:
    """List the models with their daily limits."""
    from pomogator.llm.catalog import load_catalog

    settings = settings_for()
    catalog = load_catalog(settings.models_file)
    rows = [
        (
            m.id + (" (default)" if m.id == catalog.default_id else ""),
            m.title,
            m.free_daily if m.free_daily else "premium only",
            m.premium_daily,
            "yes" if m.vision else "no",
            m.context_length,
        )
        for m in catalog.models
    ]
    cli_output.print_table("Models", ["id", "title", "free/day", "premium/day", "vision", "context"], rows)


# --- chat --------------------------------------------------------------------------------------------------


@app.command("chat")
def chat(
    model: Annotated[
        str | None, typer.Option(metavar="MODEL_ID", help="Model id for this session (see `pomogator models list`).")
    ] = None,
    user: Annotated[
        int | None,
        typer.Option(
            metavar="TELEGRAM_ID",
            min=TELEGRAM_ID_MIN,
            max=TELEGRAM_ID_MAX,
            help="Chat as this Telegram user: their role, context and quota.",
        ),
    ] = None,
) -> None:
    """Chat with a model in the terminal.

    Each line read from stdin is a message; a line ending in \\ goes on in the next one, and lines pasted at a
    terminal at once are one message. /clear resets the context, /model switches, /help lists the commands, /exit
    quits; a line that only starts with a slash ("/etc/hosts?") is a message. At a terminal Ctrl-C stops an answer
    and keeps what it wrote, and at the prompt quits; Ctrl-D sends what was typed, or quits when nothing was.

    Without --user this is a local operator session: any model, no quota, a context of its own.

    Log records below WARNING are shown only when POMOGATOR_LOG_LEVEL is set, as with every command.
    """
    from pomogator.container import build_services
    from pomogator.errors import UnknownModel
    from pomogator.llm.catalog import load_catalog
    from pomogator.terminal_chat import run_terminal_chat

    settings = settings_for("openrouter_api_key")
    if user is not None:
        # A user's chat acts on the deployment's data, as the admin commands do: a new empty file would only say
        # "not found" (and then let `user grant-premium` "succeed" on it).
        require_database_file(settings.database_url)
    if model is not None:
        # A bad value of an option, like any other (exit code 2), said before the database is opened.
        try:
            load_catalog(settings.models_file).get(model)
        except UnknownModel as exc:
            raise typer.BadParameter(str(exc), param_hint="--model") from None

    async def main() -> None:
        # A first try of a new checkout: the local session may start on a new SQLite file (``--user`` may not).
        async with build_services(settings) as services:
            await run_terminal_chat(services, model_id=model, telegram_id=user)

    asyncio.run(main())


# --- run ---------------------------------------------------------------------------------------------------


@run_app.command("bot")
def run_bot() -> None:
    """Run the Telegram bot (long polling). In webhook mode the web app serves the bot instead."""
    servers.run_bot()


@run_app.command("web")
def run_web() -> None:
    """Run the web app: the YooKassa webhook, health checks and, in webhook mode, the Telegram bot."""
    servers.run_web()


@app.command("healthcheck")
def healthcheck() -> None:
    """Exit 0 when the process in this container keeps its heartbeat fresh (the image's HEALTHCHECK)."""
    from pomogator.heartbeat import is_healthy

    raise typer.Exit(0 if is_healthy() else 1)


# Sub-apps of other areas are registered below.

from pomogator.commands.logs import app as logs_app  # noqa: E402 (its commands import this module lazily)

app.add_typer(logs_app, name="logs")

from pomogator.commands.payments import app as payments_app  # noqa: E402 (its commands import this module lazily)

app.add_typer(payments_app, name="payments")

from pomogator.commands.bot import app as bot_app  # noqa: E402 (its commands import this module lazily)

app.add_typer(bot_app, name="bot")

from pomogator.commands.usage import usage  # noqa: E402 (it imports this module lazily)

app.command("usage")(usage)
unwrap_help(app)
