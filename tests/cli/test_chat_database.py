"""``pomogator chat --user`` while the database is unavailable: the message fails, the session goes on, and an
answer that could not be stored says so."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import typer

from pomogator.container import Services
from pomogator.terminal_chat import run_terminal_chat
from tests.fakes.openai_server import FakeLLM

USER_ID = 5


def cannot_open(folder: Path) -> sqlite3.OperationalError:
    """What SQLite raises for a database file it cannot open: an outage (``outage_of``), not a bug."""
    with pytest.raises(sqlite3.OperationalError) as failed:
        sqlite3.connect(folder / "missing" / "x.sqlite3")
    return failed.value


async def chat(services: Services, monkeypatch: pytest.MonkeyPatch, stdin: str) -> None:
    await services.users.ensure(USER_ID)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    await run_terminal_chat(services, model_id=None, telegram_id=USER_ID)


async def test_an_outage_fails_the_message_and_the_chat_goes_on(
    services: Services,
    fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    real = services.chat.stream_reply
    outages = [cannot_open(tmp_path)]

    async def stream_reply(*args: Any, **kwargs: Any) -> AsyncIterator[str]:
        if outages:
            raise outages.pop()
        async for piece in real(*args, **kwargs):
            yield piece

    monkeypatch.setattr(services.chat, "stream_reply", stream_reply)
    with pytest.raises(typer.Exit) as ended:
        await chat(services, monkeypatch, "one\ntwo\n")
    assert ended.value.exit_code == 1  # a script learns that a message failed
    shown = capsys.readouterr()
    assert shown.out == "Echo: two\n"
    assert shown.err == (
        "Error: The database is temporarily unavailable. Please try again in a minute. [SQLITE_CANTOPEN]\n"
    )
    assert fake_llm.request_count == 1


async def test_an_answer_that_could_not_be_stored_says_so(
    services: Services,
    fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    real = services.chat._store
    outages = [cannot_open(tmp_path)]

    async def store(*args: Any, **kwargs: Any) -> None:
        if outages:
            raise outages.pop()
        await real(*args, **kwargs)

    monkeypatch.setattr(services.chat, "_store", store)
    await chat(services, monkeypatch, "one\ntwo\n")
    shown = capsys.readouterr()
    assert shown.out == "Echo: one\nEcho: two\n"
    assert shown.err.splitlines() == [
        "(This answer was not stored, the database is unavailable: the model will not see it in the next messages.)"
    ]
    # Indeed: the second question went without the first exchange.
    assert [m["role"] for m in fake_llm.requests[1].messages] == ["user"]
