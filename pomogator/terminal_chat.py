"""``pomogator chat``: a terminal chat through the same chat and quota services as the bot."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading

from rich.live import Live
from rich.markdown import Markdown

from pomogator import cli_output
from pomogator.container import Services
from pomogator.errors import PomogatorError
from pomogator.services.chat import Dialog, Reply

HELP = "Commands: /clear resets the context, /model [ID] shows or switches the model, /exit quits."


async def _read_line(prompt: str, interactive: bool) -> str | None:
    if interactive:
        sys.stderr.write(prompt)
        sys.stderr.flush()
    line = await _readline()
    return line if line else None


def _readline() -> asyncio.Future[str]:
    """``sys.stdin.readline()`` on a daemon thread. Not ``asyncio.to_thread``: on Ctrl-C at the prompt, leaving
    ``asyncio.run`` waits for the default executor's threads, and this one waits for a line that is not coming, so
    the chat hung until Enter."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(line: str) -> None:
        if not future.done():
            future.set_result(line)

    def read() -> None:
        try:
            line = sys.stdin.readline()
        except (OSError, ValueError):
            line = ""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the chat is over
            loop.call_soon_threadsafe(deliver, line)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return future


async def _make_dialog(services: Services, model_id: str | None, telegram_id: int | None) -> Dialog:
    model = services.catalog.get(model_id) if model_id else None
    if telegram_id is None:
        return services.chat.local_dialog(model or services.catalog.default)
    dialog = services.chat.dialog_for(await services.users.get(telegram_id))
    if model is not None:
        # For this session only; the quota refuses a premium-only model to a free user.
        dialog.model = model
    return dialog


async def _switch_model(services: Services, dialog: Dialog, model_id: str) -> None:
    dialog.model = services.catalog.get(model_id)
    cli_output.notice(f"Model: {dialog.model.id}")


CUT_OFF = "(The answer was cut off at the model's length limit: write «continue» to get the rest.)"


async def _answer(services: Services, dialog: Dialog, text: str, pretty: bool) -> None:
    reply = Reply()
    if pretty:
        answer = ""
        with Live(Markdown(""), console=cli_output.console(), refresh_per_second=8) as live:
            async for piece in services.chat.stream_reply(dialog, text, reply=reply):
                answer += piece
                live.update(Markdown(answer))
    else:
        async for piece in services.chat.stream_reply(dialog, text, reply=reply):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
    if reply.cut_off:
        cli_output.notice(CUT_OFF)


async def _command(services: Services, dialog: Dialog, line: str) -> bool:
    """Handle a /command; returns False when the session should end."""
    name, _, arg = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/clear":
        await dialog.conversation.clear()
        cli_output.notice("Context cleared.")
    elif name == "/model" and arg.strip():
        await _switch_model(services, dialog, arg.strip())
    elif name == "/model":
        cli_output.notice(f"Model: {dialog.model.id}. Available: {', '.join(services.catalog.ids)}")
    else:
        cli_output.notice(HELP)
    return True


async def run_terminal_chat(services: Services, *, model_id: str | None, telegram_id: int | None) -> None:
    """Raises UnknownModel (listing valid ids), UserNotFound, PremiumRequired before the session starts."""
    dialog = await _make_dialog(services, model_id, telegram_id)
    interactive = sys.stdin.isatty()
    pretty = sys.stdout.isatty()
    if interactive:
        cli_output.notice(f"Pomogator chat · model {dialog.model.id}. {HELP} Ctrl-D quits.")
    try:
        while (line := await _read_line("you> ", interactive)) is not None:
            text = line.strip()
            if not text:
                continue
            try:
                if text.startswith("/"):
                    if not await _command(services, dialog, text):
                        break
                    continue
                await _answer(services, dialog, text, pretty)
            except PomogatorError as exc:
                cli_output.error(exc.user_message)
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl-C: end the prompt's line, then let the interruption end the command (exit code 130).
        sys.stderr.write("\n")
        raise
