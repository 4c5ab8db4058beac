"""``pomogator chat``: a terminal chat through the same chat and quota services as the bot."""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from types import FrameType

import typer
from rich.console import Console

from pomogator import cli_output
from pomogator.container import Services
from pomogator.errors import (
    DatabaseUnavailable,
    LLMAccountProblem,
    LLMError,
    LLMModelGone,
    MessageTooLong,
    PomogatorError,
)
from pomogator.llm.catalog import Model
from pomogator.logs.redact import Redactor
from pomogator.services.chat import Dialog, Reply
from pomogator.store.outage import outage_of
from pomogator.terminal_render import AnswerView, answer_console, clean

HELP = (
    "Commands: /clear resets the context, /model [ID] shows or switches the model, /help shows this, /exit quits. "
    "A line ending in \\ goes on in the next one; lines pasted at once are one message."
)
INTERACTIVE_HELP = "Ctrl-C stops an answer; at the prompt Ctrl-C or Ctrl-D quits."

COMMANDS = ("/exit", "/quit", "/clear", "/model", "/help")
# What Telegram marks as a command (letters, digits, "_"): "/xyz" is one, "/etc/hosts" is not.
COMMAND_WORD = re.compile(r"/[A-Za-z0-9_]{1,32}")

# Lines that reach the terminal within this time of each other came in one paste: a terminal may hand a long paste
# over in parts, and nobody types a line that fast.
PASTE_GAP_S = 0.02


async def _read_message(interactive: bool) -> str | None:
    """The next message, None at the end of the input: a line, with the lines pasted together with it (at a
    terminal) and the lines that a backslash at the end of a line continues it with."""
    parts: list[str] = []
    prompt = "you> "
    while chunk := await _read_lines(prompt, interactive):
        body = chunk.rstrip("\r\n")
        if not body.endswith("\\"):
            return "".join(parts) + chunk
        parts.append(body[:-1] + "\n")
        prompt = "...> "
    if interactive:
        # Ctrl-D: the shell's prompt goes on a line of its own, not after ours.
        sys.stderr.write("\n")
        sys.stderr.flush()
    return "".join(parts) or None


async def _read_lines(prompt: str, interactive: bool) -> str:
    if interactive:
        sys.stderr.write(prompt)
        sys.stderr.flush()
    return await _readline(interactive)


def _readline(interactive: bool) -> asyncio.Future[str]:
    """``sys.stdin.readline()`` on a daemon thread, with the lines the terminal has already received after it when
    ``interactive`` (a paste), "" at the end of the input. Not ``asyncio.to_thread``: on Ctrl-C at the prompt,
    leaving ``asyncio.run`` waits for the default executor's threads, and this one waits for a line that is not
    coming, so the chat hung until Enter."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not future.done():
            future.set_result(line)

    def read() -> None:
        try:
            lines = [sys.stdin.readline()]
            while interactive and lines[-1].endswith("\n") and _more_input():
                lines.append(sys.stdin.readline())
            line = "".join(lines)
        except (OSError, ValueError):
            line = ""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the chat is over
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return future


def _more_input() -> bool:
    """Whether a whole line more is waiting on the terminal (a terminal hands over complete lines only)."""
    try:
        ready, _, _ = select.select([sys.stdin], [], [], PASTE_GAP_S)
    except (OSError, ValueError):
        return False
    return bool(ready)


async def _make_dialog(services: Services, model_id: str | None, telegram_id: int | None) -> Dialog:
    model = services.catalog.get(model_id) if model_id else None
    if telegram_id is None:
        return services.chat.local_dialog(model or services.catalog.default)
    dialog = services.chat.dialog_for(await services.users.get(telegram_id))
    if model is not None:
        _check_allowed(services, dialog, model)
        dialog.model = model  # for this session only
    return dialog


def _check_allowed(services: Services, dialog: Dialog, model: Model) -> None:
    """Raises PremiumRequired when the quota would refuse every message to ``model`` (premium-only, free user)."""
    if dialog.charge_quota and dialog.telegram_id is not None:
        services.quota.reservation_terms(model, dialog.premium)


async def _switch_model(services: Services, dialog: Dialog, model_id: str) -> None:
    model = services.catalog.get(model_id)
    _check_allowed(services, dialog, model)
    dialog.model = model
    cli_output.notice(f"Model: {dialog.model.id}")


CUT_OFF = "(The answer was cut off at the model's length limit: write «continue» to get the rest.)"
FILTERED = "(The model's content filter stopped the answer part-way.)"
STOPPED = "(Answer stopped: what it wrote stays in the context.)"
STOPPED_EMPTY = "(Answer stopped before the model wrote anything.)"
UNSAVED = "(This answer was not stored, the database is unavailable: the model will not see it in the next messages.)"


async def _answer(services: Services, dialog: Dialog, text: str, console: Console | None, interactive: bool) -> None:
    """Stream the answer to ``text``: rendered as Markdown on ``console``, or as plain text without one. At a
    terminal (``interactive``) Ctrl-C stops the answer as the bot's Stop button does."""
    reply = Reply()
    stop = asyncio.Event()
    with _ctrl_c_stops(stop) if interactive else contextlib.nullcontext():
        # Closed at once when the answer is interrupted: the service gives the request back then.
        async with contextlib.aclosing(services.chat.stream_reply(dialog, text, stop=stop, reply=reply)) as pieces:
            if console is not None:
                with AnswerView(console) as view:
                    async for piece in pieces:
                        view.add(piece)
            else:
                await _write_plain(pieces)
    if reply.stopped:
        cli_output.notice(STOPPED_EMPTY if reply.blank else STOPPED)
    elif reply.cut_off:
        cli_output.notice(CUT_OFF)
    elif reply.filtered:
        cli_output.notice(FILTERED)
    if reply.unsaved:
        cli_output.notice(UNSAVED)


@contextlib.contextmanager
def _ctrl_c_stops(stop: asyncio.Event) -> Iterator[None]:
    """Inside, the first Ctrl-C sets ``stop``; another one does what Ctrl-C does outside (it ends the chat)."""
    loop = asyncio.get_running_loop()
    outside = signal.getsignal(signal.SIGINT)
    pressed = False

    def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        nonlocal pressed
        if not pressed:
            pressed = True
            loop.call_soon_threadsafe(stop.set)
        elif callable(outside):
            outside(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, outside)


async def _write_plain(pieces: AsyncIterator[str]) -> None:
    wrote = False
    try:
        async for piece in pieces:
            text = clean(piece)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
                wrote = True
    finally:
        # After a failure mid-way too: the next answer must not be glued onto this one.
        if wrote:
            sys.stdout.write("\n")
            sys.stdout.flush()


def _failure_message(exc: PomogatorError, base_url: str) -> str:
    """What the operator is told about a failed message. For the model's failures, users' text says only
    "unavailable"; the operator also gets what went wrong, where, and which setting to check."""
    if isinstance(exc, DatabaseUnavailable) and exc.detail:
        return f"{exc.user_message} [{exc.detail}]"
    if isinstance(exc, MessageTooLong):
        # Refused before anything was sent: not the provider's failure, so no base URL or HTTP status to name.
        return f"{exc.user_message} Models: /model; switch with /model ID."
    if not isinstance(exc, LLMError):
        return exc.user_message
    status = _status_code(exc)
    reason = exc.detail or "no details"
    root = _root_cause(exc)
    if status is not None:
        reason = f"HTTP {status}: {reason}"
    elif root is not None:
        # The first failure names what went wrong: a refused connection, a name not resolved, a bad URL.
        first = f"{type(root).__name__}: {cli_output.first_line(root)}"
        reason = first if reason == type(root).__name__ else f"{reason} ({first})"
    message = f"{exc.user_message} [{type(exc).__name__} from {base_url}: {reason}]"
    if isinstance(exc, LLMModelGone):
        # Found at the base URL, which is right: the models file names a model the provider no longer serves.
        message += " Switch with /model ID, or replace the model in POMOGATOR_MODELS_FILE."
    elif isinstance(exc, LLMAccountProblem):
        message += " Check POMOGATOR_OPENROUTER_API_KEY and the account's credit."
    elif status in (404, 405) or exc.detail.startswith("connection:"):
        message += " Check POMOGATOR_OPENROUTER_BASE_URL."
    return message


def _causes(exc: BaseException) -> list[BaseException]:
    """The exceptions ``exc`` was raised from or during, nearest first."""
    chain: list[BaseException] = []
    seen = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    return chain


def _status_code(exc: LLMError) -> int | None:
    """The HTTP status the provider answered with, when the failure was one (the SDK's error carries it)."""
    for cause in _causes(exc):
        status = getattr(cause, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def _root_cause(exc: LLMError) -> BaseException | None:
    causes = _causes(exc)
    return causes[-1] if causes else None


def _command(text: str) -> tuple[str, str] | None:
    """``text`` as a command name and its argument; None for a message to the model. Only the chat's commands are
    commands, as in the bot: a text that merely starts with a slash ("/etc/hosts — что это?") is a question, and
    so is one of several lines. A lone unknown "/word" is a command, answered with the list of them."""
    if "\n" in text:
        return None
    name, _, arg = text.partition(" ")
    name = name.lower()
    if name in COMMANDS or (not arg and COMMAND_WORD.fullmatch(name)):
        return name, arg.strip()
    return None


async def _run_command(services: Services, dialog: Dialog, name: str, arg: str) -> bool:
    """Carry out a command; returns False when the session should end."""
    if name in ("/exit", "/quit"):
        return False
    if name == "/clear":
        await dialog.conversation.clear()
        cli_output.notice("Context cleared.")
    elif name == "/model" and arg:
        await _switch_model(services, dialog, arg)
    elif name == "/model":
        cli_output.notice(f"Model: {dialog.model.id}. Available: {', '.join(services.catalog.ids)}")
    elif name == "/help":
        cli_output.notice(HELP)
    else:
        cli_output.notice(f"Unknown command {name}. {HELP}")
    return True


async def run_terminal_chat(services: Services, *, model_id: str | None, telegram_id: int | None) -> None:
    """Raises UnknownModel (listing valid ids), UserNotFound, PremiumRequired before the session starts.

    A session whose input is not a terminal (a script) ends with ``typer.Exit(1)`` when any message failed. A
    database outage during a message fails that message only.
    """
    dialog = await _make_dialog(services, model_id, telegram_id)
    interactive = sys.stdin.isatty()
    console = answer_console() if sys.stdout.isatty() else None
    # The provider's error texts and the base URL may quote secrets.
    redactor = Redactor.from_settings(services.settings)
    failed = False
    if interactive:
        cli_output.notice(f"Pomogator chat · model {dialog.model.id}. {HELP} {INTERACTIVE_HELP}")
    try:
        while (message := await _read_message(interactive)) is not None:
            text = message.strip()
            if not text:
                continue
            try:
                if (command := _command(text)) is not None:
                    if not await _run_command(services, dialog, *command):
                        break
                    continue
                await _answer(services, dialog, text, console, interactive)
            except Exception as exc:
                failure = exc if isinstance(exc, PomogatorError) else outage_of(exc)
                if failure is None:
                    raise
                failed = True
                told = _failure_message(failure, services.settings.openrouter_base_url)
                cli_output.error(clean(redactor.text(told)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl-C: end the prompt's line, then let the interruption end the command (exit code 130).
        sys.stderr.write("\n")
        raise
    if failed and not interactive:
        raise typer.Exit(1)
