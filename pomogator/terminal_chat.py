"""``pomogator chat``: a terminal chat through the same chat and quota services as the bot."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import select
import signal
import sys
import termios
import threading
from collections.abc import AsyncIterator, Iterator
from types import FrameType
from typing import TextIO

import typer
from rich.cells import cell_len
from rich.console import Console

from pomogator import cli_output
from pomogator.container import Services
from pomogator.errors import (
    DatabaseUnavailable,
    LLMAccountProblem,
    LLMEmptyAnswer,
    LLMError,
    LLMModelGone,
    LLMRegionBlocked,
    MessageTooLong,
    PomogatorError,
    exception_chain,
)
from pomogator.llm.catalog import Model
from pomogator.logs.redact import Redactor
from pomogator.services.chat import Dialog, Reply
from pomogator.store.outage import outage_of
from pomogator.terminal_render import CONTROL_CHARACTERS, AnswerView, answer_console, clean

HELP = (
    "Commands: /clear resets the context, /model [ID] shows or switches the model, /help shows this, /exit quits. "
    "A line ending in \\ goes on in the next one; lines pasted at once are one message."
)
INTERACTIVE_HELP = (
    "Ctrl-C stops an answer, and at the prompt quits; Ctrl-D sends what was typed, or quits when nothing was."
)

COMMANDS = ("/exit", "/quit", "/clear", "/model", "/help")
# What Telegram marks as a command (letters, digits, "_"): "/xyz" is one, "/etc/hosts" is not.
COMMAND_WORD = re.compile(r"/[A-Za-z0-9_]{1,32}")

# Lines that reach the chat within this time of each other came in one paste: a terminal without bracketed paste
# does not mark one, and nobody types a line that fast.
PASTE_GAP_S = 0.02
# Bracketed paste: once it is on, the terminal sends a paste between these two sequences.
BRACKETED_PASTE_ON = "\x1b[?2004h"
BRACKETED_PASTE_OFF = "\x1b[?2004l"
PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
CONTINUED = "...> "
# Longer "escape sequences" are not a key's: the characters so far are dropped.
ESCAPE_MAX = 32


class InputNotText(PomogatorError):
    user_message = (
        "The input is not UTF-8 text: convert it first (for a Windows-1251 file: iconv -f cp1251 -t utf-8 FILE)."
    )


def _not_text(line: str) -> bool:
    """Whether ``line`` holds bytes that were not UTF-8 (kept as lone surrogates by a lenient stdin, as under the
    C.UTF-8 locale)."""
    return any("\udc80" <= char <= "\udcff" for char in line)


async def _read_message(interactive: bool, editor: _LineEditor | None) -> str | None:
    """The next message, None at the end of the input: a line, with the lines pasted together with it (at a
    terminal) and the lines that a backslash at the end of a line continues it with. Raises InputNotText for bytes
    that are not UTF-8."""
    parts: list[str] = []
    prompt = "you> "
    while chunk := await _read_lines(prompt, interactive, editor):
        body = chunk.rstrip("\r\n")
        if not body.endswith("\\"):
            return "".join(parts) + chunk
        parts.append(body[:-1] + "\n")
        prompt = CONTINUED
    if interactive:
        # Ctrl-D: the shell's prompt goes on a line of its own, not after ours.
        sys.stderr.write("\n")
        sys.stderr.flush()
    return "".join(parts) or None


async def _read_lines(prompt: str, interactive: bool, editor: _LineEditor | None) -> str:
    if interactive and editor is None:
        sys.stderr.write(prompt)
        sys.stderr.flush()
    return await _readline(interactive, editor, prompt)


def _readline(interactive: bool, editor: _LineEditor | None, prompt: str) -> asyncio.Future[str]:
    """The next line on a daemon thread: from ``editor`` (which shows ``prompt``) when there is one, else
    ``sys.stdin.readline()`` with the lines the terminal has already received after it when ``interactive`` (a
    paste); "" at the end of the input. Not ``asyncio.to_thread``: on Ctrl-C at the prompt, leaving
    ``asyncio.run`` waits for the default executor's threads, and this one waits for a line that is not coming, so
    the chat hung until Enter."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(line: str | None) -> None:
        if not future.done():
            if line is None:
                future.set_exception(InputNotText())
            else:
                future.set_result(line)

    def read() -> None:
        line: str | None
        try:
            if editor is not None:
                line = editor.read_line(prompt)
            else:
                lines = [sys.stdin.readline()]
                while interactive and lines[-1].endswith("\n") and _more_input(sys.stdin.fileno()):
                    lines.append(sys.stdin.readline())
                line = "".join(lines)
            if _not_text(line):
                line = None
        except UnicodeDecodeError:
            line = None
        except (OSError, ValueError, termios.error):
            line = ""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the chat is over
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return future


def _more_input(fd: int) -> bool:
    """Whether more input reaches ``fd`` within ``PASTE_GAP_S`` (in canonical mode, a whole line more)."""
    try:
        ready, _, _ = select.select([fd], [], [], PASTE_GAP_S)
    except (OSError, ValueError):
        return False
    return bool(ready)


@contextlib.contextmanager
def _terminal_session() -> Iterator[_LineEditor | None]:
    """A line editor for a person at a terminal (stdin and stderr on it), None for anyone else. Inside, the terminal
    marks pastes (bracketed paste); leaving, however the chat ends, turns that off and puts the terminal's modes
    back."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        yield None
        return
    fd = sys.stdin.fileno()
    try:
        editor = _LineEditor(fd, sys.stderr)
    except termios.error:
        yield None
        return
    sys.stderr.write(BRACKETED_PASTE_ON)
    sys.stderr.flush()
    try:
        yield editor
    finally:
        # Not over what ended the chat when that was the terminal going away.
        with contextlib.suppress(OSError, termios.error):
            editor.close()
            sys.stderr.write(BRACKETED_PASTE_OFF)
            sys.stderr.flush()


class _LineEditor:
    """What a person types and pastes at the prompt, with the chat editing the line instead of the terminal.

    The terminal's own editing (canonical mode) hands lines over only whole, so the last line of a paste without a
    newline stayed behind and went out later as a message of its own; nor can it keep bracketed paste's marks out of
    the line: they echo as "^[[200~", or, without ECHOCTL, a Backspace after a paste rubbed out a mark instead of
    what the screen showed. Here a paste goes into the message whole, without its marks, and its last line can be
    edited until Enter. Backspace, Ctrl-U and Ctrl-W work as the terminal's did; Ctrl-D hands over what was typed
    on the line (ending it on the screen), and on an empty line ends the input; Ctrl-C and Ctrl-Z stay the
    terminal's signals. Other keys' escape sequences (arrows) are dropped instead of going into the message. The
    terminal's modes are the chat's only while a line is read: during an answer they are as the chat found them.
    """

    def __init__(self, fd: int, out: TextIO) -> None:
        self.fd = fd
        self.out = out
        self.saved = termios.tcgetattr(fd)
        editing = termios.tcgetattr(fd)
        editing[3] &= ~(termios.ICANON | termios.ECHO)
        editing[6][termios.VMIN] = 1
        editing[6][termios.VTIME] = 0
        self.editing = editing
        keys = self.saved[6]
        self.erase = {"\b", "\x7f", _key(keys[termios.VERASE])}
        self.kill = _key(keys[termios.VKILL])
        self.word_erase = _key(keys[termios.VWERASE])
        self.end = _key(keys[termios.VEOF])
        self.encoding = sys.stdin.encoding or "utf-8"
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Put the terminal's modes back (a Ctrl-C at the prompt leaves the reading thread in ``read_line``)."""
        with self._lock:
            self._closed = True
            termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)

    def read_line(self, prompt: str) -> str:
        """After ``prompt``, the lines typed or pasted until Enter, each ending in "\\n"; what was typed before a
        Ctrl-D, without one; "" for a Ctrl-D on an empty line."""
        with self._lock:
            if self._closed:
                return ""
            termios.tcsetattr(self.fd, termios.TCSANOW, self.editing)
        try:
            # Shown once the chat edits the line: what is typed at it no longer reaches the terminal's echo too.
            self._echo(prompt)
            self.out.flush()
            return self._read(len(prompt))
        finally:
            with self._lock:
                termios.tcsetattr(self.fd, termios.TCSANOW, self.saved)

    def _read(self, column: int) -> str:
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
        done = ""  # whole lines, pasted
        line = ""  # the line being edited
        escape = ""  # an escape sequence not complete yet
        pasting = entered = False
        while True:
            data = os.read(self.fd, 4096)
            if not data:
                return done + line
            for char in decoder.decode(data):
                entered = False
                if escape or char == "\x1b":
                    escape += char
                    if not _escape_complete(escape) and len(escape) < ESCAPE_MAX:
                        continue
                    if escape in (PASTE_START, PASTE_END):
                        pasting = escape == PASTE_START
                        if not pasting and not line and done:
                            # The paste ended a line: the message goes on in the next one, sent with Enter.
                            self._echo(CONTINUED)
                            column = len(CONTINUED)
                    escape = ""
                elif char in "\r\n":
                    done += line + "\n"
                    line = ""
                    column = 0
                    entered = not pasting
                    self._echo("\n")
                elif pasting:
                    if not CONTROL_CHARACTERS.match(char):
                        line += char
                        self._echo(char)
                elif char == self.end:
                    if not done and not line:
                        return ""
                    if _columns(line, column):
                        # The answer starts on a line of its own, not after what was typed.
                        self._echo("\n")
                        self.out.flush()
                    return done + line
                elif char in self.erase:
                    line = self._rub_out(line, line[:-1], column)
                elif char == self.kill:
                    line = self._rub_out(line, "", column)
                elif char == self.word_erase:
                    line = self._rub_out(line, re.sub(r"\S*\s*$", "", line, count=1), column)
                elif not CONTROL_CHARACTERS.match(char):
                    line += char
                    self._echo(char)
            self.out.flush()
            # Lines that come right after Enter were pasted with it (a terminal without bracketed paste).
            if entered and not _more_input(self.fd):
                return done

    def _rub_out(self, line: str, kept: str, column: int) -> str:
        """Erase ``line`` on the screen back to ``kept``, its start."""
        width = _columns(line, column) - _columns(kept, column)
        self._echo("\b" * width + " " * width + "\b" * width)
        return kept

    def _echo(self, text: str) -> None:
        self.out.write(text)


def _key(value: bytes | int) -> str:
    """A control key of ``termios``' list as a character ("" when the key is off)."""
    code = value if isinstance(value, int) else (value[0] if value else 0)
    return chr(code) if code else ""


def _escape_complete(sequence: str) -> bool:
    """Whether ``sequence`` (ESC and what followed it) is a whole key's or mark's escape sequence: ESC [ ... with
    its final character, ESC O and a character, or ESC and a character (Alt)."""
    if len(sequence) < 2:
        return False
    if sequence[1] == "[":
        return len(sequence) > 2 and "@" <= sequence[-1] <= "~"
    if sequence[1] == "O":
        return len(sequence) > 2
    return True


def _columns(text: str, column: int) -> int:
    """The column after ``text`` written from ``column``."""
    for char in text:
        column += 8 - column % 8 if char == "\t" else cell_len(char)
    return column


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
    """Inside, the first Ctrl-C sets ``stop``; another one does what Ctrl-C does outside (it ends the chat). Only at
    a terminal (stdin)."""
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
        with _control_keys_unechoed():
            yield
    finally:
        signal.signal(signal.SIGINT, outside)


@contextlib.contextmanager
def _control_keys_unechoed() -> Iterator[None]:
    """Inside, the terminal echoes no "^C" for a Ctrl-C (ECHOCTL off): rich's preview fills its lines to the
    width, so the echo pushed it a line down, and a copy of the answer's first line stayed on the screen above the
    answer."""
    fd = sys.stdin.fileno()
    try:
        modes = termios.tcgetattr(fd)
    except termios.error:  # not a terminal
        yield
        return
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ECHOCTL
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSANOW, modes)


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
    if isinstance(exc, LLMEmptyAnswer):
        # The provider answered as asked, with nothing in it: no HTTP status or base URL to look into.
        return f"{exc.user_message} [{exc.detail}]"
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
    elif isinstance(exc, LLMRegionBlocked):
        message += (
            " The model is refused in the country the requests come from: switch with /model ID, or reach the "
            "provider through a proxy in another country (HTTPS_PROXY)."
        )
    elif isinstance(exc, LLMAccountProblem):
        message += (
            " Check POMOGATOR_OPENROUTER_API_KEY, the key's spend limit and the account's credit and privacy settings."
        )
    elif status in (404, 405) or exc.detail.startswith("connection:"):
        message += " Check POMOGATOR_OPENROUTER_BASE_URL."
    return message


def _causes(exc: BaseException) -> list[BaseException]:
    """The exceptions ``exc`` was raised from or during, nearest first."""
    return list(exception_chain(exc))[1:]


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
    with _terminal_session() as editor:
        try:
            while True:
                try:
                    message = await _read_message(interactive, editor)
                except InputNotText as exc:
                    if not interactive:
                        raise
                    cli_output.error(exc.user_message)  # at a terminal, the next line may be text again
                    continue
                if message is None:
                    break
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
