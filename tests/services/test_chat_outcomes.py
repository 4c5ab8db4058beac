"""What is kept of an answer that ends unusually: its person erased or its context cleared while it streams, a blank
answer, an answer cut off by the model's length limit.

The PostgreSQL-only tests hold the other side's transaction open on a connection of their own, to check the order
of the two at the database: an answer being stored and an erase or a clear in flight wait for each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import asyncpg
import pytest

from pomogator.container import Services
from pomogator.errors import LLMEmptyAnswer, LLMError, LLMModerated
from pomogator.llm.client import Delta, Message, StreamEvent
from pomogator.services.chat import STORE_SQL, Dialog, Reply
from pomogator.services.conversations import encode_content
from pomogator.services.users import Person
from pomogator.store.tables import DialogMessage, LLMRequest
from pomogator.timeutil import utcnow
from tests.fakes import openai_server as fake
from tests.fakes.openai_server import FakeLLM

ANN = 4104


async def dialog_for(services: Services) -> Dialog:
    return services.chat.dialog_for(await services.users.touch(Person(ANN, "Ann")))


async def stored() -> list[tuple[str, Any]]:
    rows = (
        await DialogMessage.select(DialogMessage.role, DialogMessage.content)
        .where(DialogMessage.telegram_id == ANN)
        .order_by(DialogMessage.id)
        .output(load_json=True)
    )
    return [(row["role"], row["content"]) for row in rows]


async def used(services: Services) -> int:
    return sum((await services.quota.used_today(ANN)).values())


async def requests() -> int:
    return int(await LLMRequest.count().where(LLMRequest.telegram_id == ANN))


async def drain(stream: AsyncGenerator[str, None]) -> str:
    return "".join([piece async for piece in stream])


async def first_piece(services: Services, dialog: Dialog, reply: Reply) -> AsyncGenerator[str, None]:
    """A slow answer to "question", streaming: its first piece has arrived."""
    stream = services.chat.stream_reply(dialog, "question", reply=reply)
    await anext(stream)
    return stream


# --- erased or cleared while the answer streams -------------------------------------------------------------


async def test_an_answer_streaming_while_its_person_is_erased_leaves_nothing(
    services: Services, fake_llm: FakeLLM
) -> None:
    fake_llm.enqueue(fake.Reply.slow(10, 0.5))
    reply = Reply()
    stream = await first_piece(services, await dialog_for(services), reply)
    assert await services.users.delete(ANN)
    await drain(stream)
    assert not reply.stopped
    assert not await services.users.exists(ANN)
    assert await stored() == []
    assert await requests() == 0
    assert await used(services) == 1  # answered: today's count stays, as an erasure leaves it


async def test_an_answer_streaming_while_the_context_is_cleared_is_counted_not_remembered(
    services: Services, fake_llm: FakeLLM
) -> None:
    dialog = await dialog_for(services)
    fake_llm.enqueue(fake.Reply(text="before"))
    await drain(services.chat.stream_reply(dialog, "earlier"))
    fake_llm.enqueue(fake.Reply.slow(10, 0.5))
    reply = Reply()
    stream = await first_piece(services, dialog, reply)
    assert await services.chat.clear_context(ANN) == 2
    await drain(stream)
    assert reply.charged
    assert await stored() == []
    assert (await used(services), await requests()) == (2, 2)

    # A request that starts after the clear is remembered as usual, and goes without the history.
    fake_llm.enqueue(fake.Reply(text="after"))
    await drain(services.chat.stream_reply(dialog, "next"))
    assert fake_llm.requests[-1].messages == [{"role": "user", "content": "next"}]
    assert await stored() == [("user", "next"), ("assistant", "after")]


async def test_a_sender_answered_in_one_trip_is_not_remembered_past_a_clear(
    services: Services, fake_llm: FakeLLM
) -> None:
    if not services.chat.opens_in_one_trip:
        pytest.skip("PostgreSQL only: SQLite touches, reserves and reads in separate statements")
    fake_llm.enqueue(fake.Reply.slow(10, 0.5))
    reply = Reply()
    stream = services.chat.stream_sender_reply(Person(ANN, "Ann"), "question", reply=reply)
    await anext(stream)
    await services.chat.clear_context(ANN)
    await drain(stream)
    assert await stored() == []
    assert (await used(services), await requests()) == (1, 1)


# --- PostgreSQL: the two sides meet at the person's row -----------------------------------------------------


@pytest.fixture
async def other(services: Services, db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own for the other side's transaction (PostgreSQL only)."""
    if services.database.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite's write transactions never overlap")
    connection = await asyncpg.connect(db_url)
    try:
        yield connection
    finally:
        await connection.close()


async def someone_waits_for_a_lock(connection: asyncpg.Connection) -> None:
    for _ in range(500):
        if await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("nobody waited for a row lock within 10 s")


async def store_without_commit(connection: asyncpg.Connection, started: Any) -> None:
    """``STORE_SQL`` for an answer to "question", as ``ChatService`` runs it, in the open transaction."""
    now = utcnow()
    turns = [
        (ANN, role, encode_content(text), 1, "test/model", now) for role, text in (("user", "q"), ("assistant", "a"))
    ]
    request = (ANN, "test/model", 1, 1, None, "ok", now)
    parts = STORE_SQL.split("{}")
    numbered = parts[0] + "".join(f"${index}{part}" for index, part in enumerate(parts[1:], start=1))
    await connection.execute(numbered, ANN, *(v for turn in turns for v in turn), started, *request)


async def test_an_erase_in_flight_makes_the_answer_wait_then_store_nothing(
    services: Services, fake_llm: FakeLLM, other: asyncpg.Connection
) -> None:
    fake_llm.enqueue(fake.Reply.slow(5, 0.2))
    stream = await first_piece(services, await dialog_for(services), Reply())
    erase = other.transaction()
    await erase.start()
    # What ``UserService.delete`` does first, left open.
    await other.execute("DELETE FROM users WHERE telegram_id = $1", ANN)
    await other.execute("DELETE FROM dialog_messages WHERE telegram_id = $1", ANN)
    answering = asyncio.create_task(drain(stream))
    await someone_waits_for_a_lock(other)
    assert not answering.done()
    await erase.commit()
    await answering
    assert await stored() == []
    assert await requests() == 0


async def test_an_erase_waits_for_an_answer_being_stored_and_takes_it_too(
    services: Services, other: asyncpg.Connection
) -> None:
    await dialog_for(services)
    store = other.transaction()
    await store.start()
    await store_without_commit(other, utcnow())
    erasing = asyncio.create_task(services.users.delete(ANN))
    await someone_waits_for_a_lock(other)
    await store.commit()
    assert await erasing
    assert await stored() == []
    assert await requests() == 0


async def test_a_clear_in_flight_makes_the_answer_wait_then_keep_only_its_count(
    services: Services, fake_llm: FakeLLM, other: asyncpg.Connection
) -> None:
    fake_llm.enqueue(fake.Reply.slow(5, 0.2))
    stream = await first_piece(services, await dialog_for(services), Reply())
    clear = other.transaction()
    await clear.start()
    # What ``StoredConversation.clear`` does first, left open.
    await other.execute("SELECT FROM users WHERE telegram_id = $1 FOR UPDATE", ANN)
    await other.execute("UPDATE users SET context_cleared_at = $1 WHERE telegram_id = $2", utcnow(), ANN)
    answering = asyncio.create_task(drain(stream))
    await someone_waits_for_a_lock(other)
    assert not answering.done()
    await clear.commit()
    await answering
    assert await stored() == []
    assert await requests() == 1


async def test_a_clear_waits_for_an_answer_being_stored_and_clears_it_too(
    services: Services, other: asyncpg.Connection
) -> None:
    await dialog_for(services)
    store = other.transaction()
    await store.start()
    await store_without_commit(other, utcnow())
    clearing = asyncio.create_task(services.chat.clear_context(ANN))
    await someone_waits_for_a_lock(other)
    await store.commit()
    assert await clearing == 2
    assert await stored() == []


# --- blank and cut-off answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        # Not "the model is unavailable, try later": it answered, with nothing.
        pytest.param(fake.Reply(text="   \n  "), LLMEmptyAnswer, id="blank"),
        pytest.param(fake.Reply(text="\n", finish_reason="content_filter"), LLMModerated, id="blank-filtered"),
    ],
)
async def test_a_blank_answer_is_an_error_not_a_turn(
    services: Services, fake_llm: FakeLLM, action: fake.Action, expected: type[LLMError]
) -> None:
    dialog = await dialog_for(services)
    fake_llm.enqueue(action)
    with pytest.raises(LLMError) as caught:
        await drain(services.chat.stream_reply(dialog, "hi"))
    assert type(caught.value) is expected
    assert await used(services) == 0
    assert await stored() == []
    assert await requests() == 0


async def test_an_answer_whose_connection_fails_after_its_text_is_kept_and_counted(
    services: Services, fake_llm: FakeLLM
) -> None:
    """The text was whole (finish_reason came) when the connection failed before the usage chunk: the person has
    the answer, and OpenRouter billed it."""
    fake_llm.enqueue(fake.Reply(text="The whole answer.", drop_after_finish=True))
    reply = Reply()
    assert await drain(services.chat.stream_reply(await dialog_for(services), "hi", reply=reply)) == "The whole answer."
    assert reply.charged and not reply.stopped and reply.finish_reason == "stop"
    assert await stored() == [("user", "hi"), ("assistant", "The whole answer.")]
    assert (await used(services), await requests()) == (1, 1)


async def test_a_blank_answer_stopped_costs_nothing(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    async def blank_then_silence(model: str, messages: list[Message], max_tokens: int) -> AsyncIterator[StreamEvent]:
        yield Delta("  \n ")
        await asyncio.Event().wait()

    monkeypatch.setattr(services.chat.llm, "stream", blank_then_silence)
    dialog = await dialog_for(services)
    stop = asyncio.Event()
    reply = Reply()
    async for _ in services.chat.stream_reply(dialog, "hi", stop=stop, reply=reply):
        stop.set()
    assert reply.stopped
    assert not reply.charged
    assert await used(services) == 0
    assert await stored() == []
    assert await requests() == 0


async def test_a_stopped_answer_with_text_is_charged(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply.slow(50, 5.0))
    stop = asyncio.Event()
    reply = Reply()
    async for _ in services.chat.stream_reply(await dialog_for(services), "hi", stop=stop, reply=reply):
        stop.set()
    assert reply.stopped and reply.charged
    assert reply.finish_reason is None and not reply.cut_off
    assert await used(services) == 1


async def test_an_answer_cut_off_by_the_length_limit_says_so_and_is_kept(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text="This is cut mid", finish_reason="length"))
    reply = Reply()
    assert await drain(services.chat.stream_reply(await dialog_for(services), "hi", reply=reply)) == "This is cut mid"
    assert reply.finish_reason == "length"
    assert reply.cut_off and reply.charged and not reply.stopped
    assert await stored() == [("user", "hi"), ("assistant", "This is cut mid")]


async def test_an_answer_the_content_filter_ended_is_marked_as_such(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text="Начало ответа", finish_reason="content_filter"))
    reply = Reply()
    await drain(services.chat.stream_reply(await dialog_for(services), "hi", reply=reply))
    assert reply.filtered and not reply.cut_off and not reply.stopped


async def test_a_complete_answer_is_not_cut_off(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text="Whole."))
    reply = Reply()
    await drain(services.chat.stream_reply(await dialog_for(services), "hi", reply=reply))
    assert reply.finish_reason == "stop"
    assert not reply.cut_off
