"""Chat through the real openai SDK against the fake OpenRouter: request shape, context, errors, stop, storage."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest

from pomogator.container import Services, build_services
from pomogator.errors import (
    DatabaseUnavailable,
    ImagesTooLarge,
    LLMAccountProblem,
    LLMBadRequest,
    LLMEmptyAnswer,
    LLMError,
    LLMModerated,
    LLMNoRoomToAnswer,
    LLMRateLimited,
    LLMRegionBlocked,
    LLMTimeout,
    LLMUnavailable,
    MessageTooLong,
    PremiumRequired,
    QuotaExceeded,
    VisionUnsupported,
)
from pomogator.llm.client import StreamEvent, TextComplete
from pomogator.llm.tokens import estimate_content
from pomogator.services import quota as quota_module
from pomogator.services import users as users_module
from pomogator.services.chat import (
    IMAGE_PLACEHOLDER,
    MEDIA_TURNS_KEPT,
    OLD_FILE_PLACEHOLDER,
    OLD_IMAGE_PLACEHOLDER,
    Dialog,
    Reply,
    SenderUndecided,
    build_messages,
    forgotten_files,
    with_recent_media,
)
from pomogator.services.conversations import Content, StoredConversation, Turn, encode_content
from pomogator.services.files.images import MAX_REQUEST_MEDIA_BYTES
from pomogator.services.opening import MessageOpener
from pomogator.services.quota import Reservation
from pomogator.services.users import TOUCH_LAZILY_SQL, TOUCH_SQL, Person, touch_values
from pomogator.store.engine import SharedConnectionSQLiteEngine, raw
from pomogator.store.tables import DailyUsage, DialogMessage, LLMRequest, User
from pomogator.timeutil import utcnow
from tests.conftest import make_settings
from tests.fakes import openai_server as fake
from tests.fakes.openai_server import FakeLLM
from tests.fakes.tcp_proxy import TcpProxy

ANN = 4004
BOB = 4005
IMAGE_URL = "data:image/png;base64,iVBORw0KGgo="

# ``plain`` is the default; ``tiny`` has a context window of a few short messages; ``eyes`` sees images.
CATALOG = """
default = "test/plain"

[[models]]
id = "test/plain"
free_daily = 5
premium_daily = 10
vision = false
context_length = 100000
max_output_tokens = 2000

[[models]]
id = "test/tiny"
free_daily = 5
premium_daily = 10
vision = false
context_length = 300
max_output_tokens = 100

[[models]]
id = "test/eyes"
free_daily = 5
premium_daily = 10
vision = true
context_length = 100000
max_output_tokens = 3000

[[models]]
id = "test/premium"
free_daily = 0
premium_daily = 3
vision = false
context_length = 100000
max_output_tokens = 1000
"""

ServicesFactory = Callable[..., contextlib.AbstractAsyncContextManager[Services]]


@pytest.fixture
def make_services(db_url: str, fake_llm: FakeLLM, tmp_path: Path) -> ServicesFactory:
    models_file = tmp_path / "models.toml"
    models_file.write_text(CATALOG, "utf-8")

    @contextlib.asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Services]:
        values: dict[str, Any] = {
            "database_url": db_url,
            "openrouter_base_url": fake_llm.base_url,
            "openrouter_max_retries": 0,
            "models_file": models_file,
            "app_url": "https://example.org/pomogator",
            "app_title": "Pomogator Test",
        }
        values.update(overrides)
        async with build_services(make_settings(**values), migrate=True) as built:
            yield built

    return factory


@pytest.fixture
async def services(make_services: ServicesFactory) -> AsyncIterator[Services]:
    async with make_services() as built:
        yield built


async def dialog_for(services: Services, telegram_id: int = ANN, model_id: str | None = None) -> Dialog:
    account = await services.users.touch(Person(telegram_id, "Someone"))
    dialog = services.chat.dialog_for(account)
    if model_id is not None:
        dialog.model = services.catalog.get(model_id)
    return dialog


async def ask(services: Services, dialog: Dialog, content: Content, **kwargs: Any) -> str:
    return "".join([piece async for piece in services.chat.stream_reply(dialog, content, **kwargs)])


async def stored(telegram_id: int = ANN) -> list[tuple[str, Any]]:
    rows = (
        await DialogMessage.select(DialogMessage.role, DialogMessage.content)
        .where(DialogMessage.telegram_id == telegram_id)
        .order_by(DialogMessage.id)
        .output(load_json=True)
    )
    return [(r["role"], r["content"]) for r in rows]


async def used(services: Services, telegram_id: int = ANN) -> int:
    return sum((await services.quota.used_today(telegram_id)).values())


def image_message(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": IMAGE_URL}}]


# --- the request ---------------------------------------------------------------------------------------


async def test_request_is_role_then_context_then_new_message(services: Services, fake_llm: FakeLLM) -> None:
    await services.users.touch(Person(ANN, "Ann"))
    await services.users.set_role(ANN, "You are a pirate.")
    dialog = await dialog_for(services)
    assert await ask(services, dialog, "hello") == "Echo: hello"
    assert await ask(services, dialog, "how are you") == "Echo: how are you"

    request = fake_llm.requests[-1]
    assert request.messages == [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Echo: hello"},
        {"role": "user", "content": "how are you"},
    ]
    assert request.model == "test/plain"
    assert request.stream
    assert request.wants_usage


async def test_no_role_means_no_system_message(services: Services, fake_llm: FakeLLM) -> None:
    await ask(services, await dialog_for(services), "hello")
    assert fake_llm.requests[-1].messages == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("model_id", ["test/plain", "test/eyes", "test/tiny"])
async def test_max_tokens_is_the_models_output_limit(services: Services, fake_llm: FakeLLM, model_id: str) -> None:
    await ask(services, await dialog_for(services, model_id=model_id), "hi")
    assert fake_llm.requests[-1].model == model_id
    assert fake_llm.requests[-1].max_tokens == services.catalog.get(model_id).max_output_tokens


async def test_attribution_headers_are_sent(services: Services, fake_llm: FakeLLM) -> None:
    await ask(services, await dialog_for(services), "hi")
    headers = fake_llm.requests[-1].headers
    assert headers["HTTP-Referer"] == "https://example.org/pomogator"
    assert headers["X-Title"] == "Pomogator Test"
    assert headers["Authorization"] == "Bearer sk-test-key"


async def test_usage_and_cost_from_the_final_chunk_are_stored(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text="Four words of answer", prompt_tokens=11, completion_tokens=22, cost=0.0123))
    reply = Reply()
    assert await ask(services, await dialog_for(services), "hi", reply=reply) == "Four words of answer"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 22)
    assert reply.usage.cost == Decimal("0.0123")
    assert not reply.stopped
    assert reply.reservation is not None
    assert reply.reservation.used == 1

    rows = await LLMRequest.select().where(LLMRequest.telegram_id == ANN)
    assert len(rows) == 1
    row = rows[0]
    assert (row["model"], row["prompt_tokens"], row["completion_tokens"], row["status"]) == (
        "test/plain",
        11,
        22,
        "ok",
    )
    assert row["cost"] == Decimal("0.0123")


async def test_computed_usage_is_stored(services: Services, fake_llm: FakeLLM) -> None:
    await ask(services, await dialog_for(services), "one two three")
    row = await LLMRequest.select().where(LLMRequest.telegram_id == ANN).first()
    assert row is not None
    messages = fake_llm.requests[-1].messages
    prompt = fake.count_prompt_tokens(messages)
    completion = len(fake.split_tokens("Echo: one two three"))
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    expected = Decimal(str(prompt * fake.PROMPT_PRICE + completion * fake.COMPLETION_PRICE))
    assert abs(row["cost"] - expected) < Decimal("1e-9")


async def test_answer_stores_both_turns_and_counts_one_request(services: Services) -> None:
    dialog = await dialog_for(services)
    await ask(services, dialog, "hello")
    assert await stored() == [("user", "hello"), ("assistant", "Echo: hello")]
    assert await used(services) == 1
    assert await LLMRequest.count().where(LLMRequest.telegram_id == ANN) == 1


async def test_an_answer_taken_back_leaves_the_context_and_the_quota_but_not_the_usage(services: Services) -> None:
    """An answer Telegram never delivered: asking again must not find it in the context, nor pay for it twice."""
    dialog = await dialog_for(services)
    await ask(services, dialog, "first")
    reply = Reply()
    await ask(services, dialog, "lost", reply=reply)
    assert reply.charged and reply.stored is not None
    await services.chat.take_back(reply)
    assert await stored() == [("user", "first"), ("assistant", "Echo: first")]
    assert await used(services) == 1
    assert await LLMRequest.count().where(LLMRequest.telegram_id == ANN) == 2
    # Taking back twice gives nothing back twice.
    await services.chat.take_back(reply)
    assert await used(services) == 1


async def test_an_answer_cut_off_while_it_is_kept_costs_nothing_and_leaves_the_context(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown cancels the answer while its turns are being stored: it reaches nobody, so the request is given
    back and the turns leave the context; the usage record, for what the model was paid, stays."""
    dialog = await dialog_for(services)
    keeping, go_on = asyncio.Event(), asyncio.Event()
    store = services.chat._store

    async def slow_store(*args: Any) -> None:
        keeping.set()
        await go_on.wait()
        await store(*args)

    monkeypatch.setattr(services.chat, "_store", slow_store)
    reply = Reply()
    answering = asyncio.create_task(ask(services, dialog, "cut off", reply=reply))
    await asyncio.wait_for(keeping.wait(), 5)
    answering.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await answering
    assert not reply.charged and reply.stored is None
    assert await used(services) == 0
    assert await stored() == []
    assert await LLMRequest.count().where(LLMRequest.telegram_id == ANN) == 1


async def test_image_content_is_stored_as_parts(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/eyes")
    assert await ask(services, dialog, image_message("what is it")) == "Echo: what is it [images: 1]"
    assert fake_llm.requests[-1].image_urls == [IMAGE_URL]
    assert await stored() == [("user", image_message("what is it")), ("assistant", "Echo: what is it [images: 1]")]


# --- context ---------------------------------------------------------------------------------------------


async def test_context_is_trimmed_oldest_first(services: Services, fake_llm: FakeLLM) -> None:
    # test/tiny leaves 300 - 100 = 200 tokens for the request; each message below is ~55 tokens.
    dialog = await dialog_for(services, model_id="test/tiny")
    first, second, third = ("a" * 150, "b" * 150, "c" * 150)
    await ask(services, dialog, first)
    await ask(services, dialog, second)
    assert [m["content"] for m in fake_llm.requests[-1].messages] == [first, f"Echo: {first}", second]

    await ask(services, dialog, third)
    assert [m["content"] for m in fake_llm.requests[-1].messages] == [second, f"Echo: {second}", third]
    # Trimming only shapes the request: the stored context keeps everything.
    assert len(await stored()) == 6


async def test_trimmed_context_never_starts_with_an_answer(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/tiny")
    # A short question with a long answer: the answer fits the budget but its question does not.
    fake_llm.enqueue(fake.Reply(text="z" * 330))
    await ask(services, dialog, "q" * 300)
    await ask(services, dialog, "next")
    assert fake_llm.requests[-1].messages == [{"role": "user", "content": "next"}]


async def test_a_document_that_falls_off_the_context_is_reported_once(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/tiny")
    dialog.premium = True  # more requests a day than the free ones
    document = '<file name="отчёт &amp; план.txt">\n' + "d" * 120 + "\n</file>\n\nО чём он?"
    replies = [Reply()]
    await ask(services, dialog, document, reply=replies[0])
    seen = []
    for n in range(6):
        replies.append(Reply())
        await ask(services, dialog, f"question {n} " + "q" * 40, reply=replies[-1])
        seen.append(any(m["content"] == document for m in fake_llm.requests[-1].messages))
    forgotten = [reply.forgotten_files for reply in replies[1:]]
    # While the document fits it is not reported; the request it first falls out of reports it, and no later one.
    first_without = seen.index(False)
    assert seen[:first_without] == [True] * first_without and first_without > 0
    assert forgotten == [()] * first_without + [("отчёт & план.txt",)] + [()] * (5 - first_without)
    assert replies[0].forgotten_files == ()


async def test_a_document_a_smaller_model_cannot_take_is_reported_once(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services)
    dialog.premium = True
    document = '<file name="big.txt">\n' + "d" * 600 + "\n</file>\n\nО чём он?"
    await ask(services, dialog, document)
    fitting = Reply()
    await ask(services, dialog, "and on the big model?", reply=fitting)
    assert fitting.forgotten_files == ()
    dialog.model = services.catalog.get("test/tiny")
    replies = [Reply(), Reply()]
    for reply in replies:
        await ask(services, dialog, "and now?", reply=reply)
    assert [reply.forgotten_files for reply in replies] == [("big.txt",), ()]


def test_a_scan_whose_file_is_no_longer_sent_is_reported_once() -> None:
    history = [Turn("user", SCAN, estimate_content(SCAN)), Turn("assistant", "read", 1)]
    for n in range(1, 5):
        history += [Turn("user", image_number(n), 1004), Turn("assistant", f"answer {n}", 3)]
    recent = with_recent_media(history, "and now?")
    assert forgotten_files(history, recent, 0, 0) == ("scan.pdf",)
    # Stored without its file, it is not found again; nor is a scan still sent.
    assert forgotten_files(recent, with_recent_media(recent, "and then?"), 0, 0) == ()
    assert forgotten_files(history[:4], with_recent_media(history[:4], "hi"), 0, 0) == ()


async def test_role_counts_against_the_context(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/tiny")
    await ask(services, dialog, "a" * 150)
    dialog.role = "r" * 150
    await ask(services, dialog, "b" * 150)
    # Without the role the earlier exchange fits (~166 tokens); with it (~55 more) only the answer would, and a
    # context never starts with an answer.
    assert fake_llm.requests[-1].messages == [
        {"role": "system", "content": "r" * 150},
        {"role": "user", "content": "b" * 150},
    ]
    dialog.role = None
    await ask(services, dialog, "c" * 150)
    assert [m["content"][0] for m in fake_llm.requests[-1].messages] == ["b", "E", "c"]


async def test_message_too_long_for_the_model_is_refused_and_refunded(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/tiny")
    with pytest.raises(MessageTooLong) as caught:
        await ask(services, dialog, "x" * 1000)
    # Not the provider's refusal: the message alone is over what the model takes, whatever the context.
    assert not isinstance(caught.value, LLMError)
    assert (caught.value.model_id, caught.value.budget) == ("test/tiny", 200)
    assert caught.value.tokens == estimate_content("x" * 1000)
    assert fake_llm.request_count == 0
    assert await used(services) == 0
    assert await stored() == []


async def test_images_become_placeholders_for_a_model_without_vision(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/eyes")
    await ask(services, dialog, image_message("look"))

    dialog.model = services.catalog.get("test/plain")
    await ask(services, dialog, "and now?")
    request = fake_llm.requests[-1]
    assert request.image_urls == []
    assert request.messages[0] == {
        "role": "user",
        "content": [{"type": "text", "text": "look"}, {"type": "text", "text": IMAGE_PLACEHOLDER}],
    }
    # The stored turn keeps the image for models that can see it.
    dialog.model = services.catalog.get("test/eyes")
    await ask(services, dialog, "again")
    assert fake_llm.requests[-1].image_urls == [IMAGE_URL]


async def test_image_to_a_model_without_vision_is_refused(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services)
    with pytest.raises(VisionUnsupported) as caught:
        await ask(services, dialog, image_message("look"))
    assert caught.value.model_id == "test/plain"
    assert caught.value.vision_models == ["test/eyes"]
    assert fake_llm.request_count == 0
    assert await used(services) == 0
    assert await stored() == []


async def test_clear_context_deletes_stored_turns(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services)
    await ask(services, dialog, "one")
    await ask(services, dialog, "two")
    await ask(services, await dialog_for(services, BOB), "bob's")

    assert await services.chat.clear_context(ANN) == 4
    assert await stored() == []
    assert len(await stored(BOB)) == 2
    await ask(services, dialog, "fresh start")
    assert fake_llm.requests[-1].messages == [{"role": "user", "content": "fresh start"}]
    # Clearing the context does not give requests back.
    assert await used(services) == 3
    assert await services.chat.clear_context(ANN) == 2


async def test_context_survives_a_new_service_instance(make_services: ServicesFactory, fake_llm: FakeLLM) -> None:
    async with make_services() as first:
        await ask(first, await dialog_for(first), "remember me")
    async with make_services() as second:
        await ask(second, await dialog_for(second), "do you?")
    assert [m["content"] for m in fake_llm.requests[-1].messages] == ["remember me", "Echo: remember me", "do you?"]


# --- local dialogs ---------------------------------------------------------------------------------------


async def test_local_dialog_charges_nothing_and_keeps_only_the_usage(services: Services, fake_llm: FakeLLM) -> None:
    dialog = services.chat.local_dialog(services.catalog.get("test/premium"), role="Be brief.")
    fake_llm.enqueue(fake.Reply(text="Echo: hello", prompt_tokens=7, completion_tokens=3, cost=0.0042))
    assert await ask(services, dialog, "hello") == "Echo: hello"
    assert await ask(services, dialog, "again") == "Echo: again"
    assert fake_llm.requests[-1].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Echo: hello"},
        {"role": "user", "content": "again"},
    ]
    assert await DialogMessage.count() == 0
    assert await DailyUsage.count() == 0
    assert await dialog.conversation.clear() == 4
    # The requests are paid for like any other: their usage is kept, under no user.
    rows = await LLMRequest.select().order_by(LLMRequest._meta.primary_key)
    assert [(r["telegram_id"], r["model"], r["status"]) for r in rows] == [(None, "test/premium", "ok")] * 2
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"], rows[0]["cost"]) == (7, 3, Decimal("0.0042"))


async def test_a_local_answer_outlives_a_database_that_cannot_keep_its_usage(
    make_services: ServicesFactory, held_postgres: TcpProxy, db_url: str, fake_llm: FakeLLM
) -> None:
    async with make_services(database_url=held_postgres.url(db_url), database_reconnect_seconds=0) as services:
        dialog = services.chat.local_dialog(services.catalog.default)
        assert await ask(services, dialog, "hello") == "Echo: hello"
        held_postgres.cut()
        reply = Reply()
        assert await ask(services, dialog, "again", reply=reply) == "Echo: again"
        # Only the usage row is lost: the answer is in the chat's memory, the context of what follows.
        assert not reply.unsaved
        assert len(await dialog.conversation.history()) == 4
    held_postgres.restore()
    async with make_services():
        assert await LLMRequest.count() == 1


# --- quota -----------------------------------------------------------------------------------------------


async def test_quota_exceeded_before_any_llm_call(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services)
    for index in range(5):
        await ask(services, dialog, f"question {index}")
    with pytest.raises(QuotaExceeded) as caught:
        await ask(services, dialog, "one more")
    assert caught.value.limit == 5
    assert fake_llm.request_count == 5
    assert len(await stored()) == 10


async def test_concurrent_requests_never_overspend_the_quota(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services)
    await ask(services, dialog, "warm-up")  # some context to read along with each reservation
    results = await asyncio.gather(
        *(ask(services, dialog, f"at once {index}") for index in range(8)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    answered = [r for r in results if isinstance(r, str)]
    assert (len(answered), len(refused)) == (4, 4)
    assert fake_llm.request_count == 5
    assert len(await stored()) == 10


async def test_premium_only_model_needs_premium(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/premium")
    with pytest.raises(PremiumRequired):
        await ask(services, dialog, "hi")
    assert fake_llm.request_count == 0

    await services.subscriptions.grant(ANN, 30)
    await services.users.set_model(ANN, "test/premium")
    dialog = await dialog_for(services)
    assert dialog.premium
    assert await ask(services, dialog, "hi") == "Echo: hi"
    assert fake_llm.requests[-1].model == "test/premium"
    assert await services.quota.used_today(ANN) == {"test/premium": 1}


# --- errors ----------------------------------------------------------------------------------------------

ERRORS: list[Any] = [
    pytest.param(fake.Error(status=401, message="User not found."), LLMAccountProblem, id="401"),
    pytest.param(fake.Error(status=402, message="Insufficient credits"), LLMAccountProblem, id="402"),
    pytest.param(fake.Moderation(), LLMModerated, id="403-moderation"),
    pytest.param(fake.Error(status=403, message="Key limit exceeded (total limit)."), LLMAccountProblem, id="403-key"),
    pytest.param(
        fake.Error(status=403, message="This model is not available in your region."), LLMRegionBlocked, id="403-region"
    ),
    pytest.param(fake.Error(status=408, message="Timed out"), LLMTimeout, id="408"),
    pytest.param(fake.Error(status=429), LLMRateLimited, id="429"),
    pytest.param(fake.Error(status=500, message="Internal"), LLMUnavailable, id="500"),
    pytest.param(fake.Error(status=502, message="Bad gateway"), LLMUnavailable, id="502"),
    pytest.param(fake.Error(status=503, message="No provider"), LLMUnavailable, id="503"),
    pytest.param(fake.Error(status=400, message="Bad request"), LLMBadRequest, id="400"),
    pytest.param(fake.MidStreamError(after_text="half an answer"), LLMUnavailable, id="mid-stream"),
    pytest.param(fake.MidStreamError(after_text="half", code=429), LLMRateLimited, id="mid-stream-429"),
    pytest.param(fake.ErrorBody200(), LLMUnavailable, id="200-error-body"),
    pytest.param(
        fake.ErrorBody200(code=403, message="Flagged", metadata={"reasons": ["hate"], "flagged_input": "..."}),
        LLMModerated,
        id="200-error-body-403",
    ),
    pytest.param(fake.Drop(), LLMUnavailable, id="dropped"),
    pytest.param(fake.Drop(after_text="half an answer"), LLMUnavailable, id="dropped-mid-stream"),
]


@pytest.mark.parametrize(("action", "expected"), ERRORS)
async def test_llm_error_refunds_and_stores_nothing(
    services: Services, fake_llm: FakeLLM, action: fake.Action, expected: type[LLMError]
) -> None:
    dialog = await dialog_for(services)
    await ask(services, dialog, "earlier")
    fake_llm.enqueue(action)
    pieces: list[str] = []
    reply = Reply()
    with pytest.raises(LLMError) as caught:
        async for piece in services.chat.stream_reply(dialog, "now", reply=reply):
            pieces.append(piece)
    assert type(caught.value) is expected
    assert fake_llm.request_count == 2
    assert await used(services) == 1
    assert await stored() == [("user", "earlier"), ("assistant", "Echo: earlier")]
    assert await LLMRequest.count().where(LLMRequest.telegram_id == ANN) == 1
    # The same request can be repeated and succeeds.
    assert await ask(services, dialog, "now") == "Echo: now"
    assert await used(services) == 2


class FlakyRefund:
    """``QuotaService.refund`` whose first call fails as when the database is briefly unreachable."""

    def __init__(self, refund: Callable[[Reservation], Awaitable[None]]) -> None:
        self.refund = refund
        self.tries: list[str] = []
        self.given_back = asyncio.Event()

    async def __call__(self, reservation: Reservation) -> None:
        if not self.tries:
            self.tries.append("failed")
            raise DatabaseUnavailable("connection refused")
        await self.refund(reservation)
        self.tries.append("given back")
        self.given_back.set()

    async def later(self) -> None:
        """Wait for the give-back that failed to be tried again, and to work."""
        async with asyncio.timeout(5):
            await self.given_back.wait()
        assert self.tries == ["failed", "given back"]


@pytest.fixture
def refunds_fail_once(services: Services, monkeypatch: pytest.MonkeyPatch) -> FlakyRefund:
    """The first give-back of a request fails; it is tried again at once."""
    flaky = FlakyRefund(services.quota.refund)
    monkeypatch.setattr(services.quota, "refund", flaky)
    monkeypatch.setattr(quota_module, "GIVE_BACK_RETRIES_S", (0.0,))
    return flaky


async def test_a_failed_give_back_leaves_the_models_error_and_the_partial_answer(
    services: Services, fake_llm: FakeLLM, refunds_fail_once: FlakyRefund
) -> None:
    dialog = await dialog_for(services)
    fake_llm.enqueue(fake.MidStreamError(after_text="half an answer"))
    reply = Reply()
    pieces: list[str] = []
    with pytest.raises(LLMUnavailable):
        async for piece in services.chat.stream_reply(dialog, "now", reply=reply):
            pieces.append(piece)
    assert reply.text == "".join(pieces) == "half an answer"
    # Tried again later, it is given back after all.
    await refunds_fail_once.later()
    assert await used(services) == 0
    assert await stored() == []


async def stopped_before_the_first_token(services: Services, fake_llm: FakeLLM) -> Reply:
    """Ask a model that takes its time, and stop the answer once the request reached it: nothing was written."""
    fake_llm.enqueue(fake.Reply(text="late", ttft=30.0))
    dialog = await dialog_for(services)
    stop = asyncio.Event()
    reply = Reply()

    async def press_stop() -> None:
        await fake_llm.wait_for_requests(1)
        stop.set()

    presser = asyncio.create_task(press_stop())
    assert await ask(services, dialog, "hi", stop=stop, reply=reply) == ""
    await presser
    return reply


async def test_a_failed_give_back_of_a_blank_stopped_answer_is_tried_again(
    services: Services, fake_llm: FakeLLM, refunds_fail_once: FlakyRefund
) -> None:
    reply = await stopped_before_the_first_token(services, fake_llm)
    assert reply.stopped and not reply.charged
    await refunds_fail_once.later()
    assert await used(services) == 0


async def test_an_answer_taken_back_while_the_database_is_unreachable_is_given_back_later(
    services: Services, refunds_fail_once: FlakyRefund
) -> None:
    dialog = await dialog_for(services)
    reply = Reply()
    await ask(services, dialog, "lost", reply=reply)
    await services.chat.take_back(reply)
    assert not reply.charged
    await refunds_fail_once.later()
    assert await used(services) == 0
    assert await stored() == []


async def test_wrong_api_key_is_an_account_problem(make_services: ServicesFactory, fake_llm: FakeLLM) -> None:
    async with make_services(openrouter_api_key="sk-wrong") as services:
        with pytest.raises(LLMAccountProblem) as caught:
            await ask(services, await dialog_for(services), "hi")
        assert "User not found" in caught.value.detail
        assert await used(services) == 0
        assert await stored() == []


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param(fake.Reply(text=""), LLMEmptyAnswer, id="empty"),
        pytest.param(fake.Reply(text="", finish_reason="content_filter"), LLMModerated, id="filtered"),
        # A reasoning model that thought through its whole limit: asking again the same way gives the same.
        pytest.param(fake.Reply(text="", finish_reason="length"), LLMNoRoomToAnswer, id="no-room"),
        # Not blank, but nothing to show once rendered: the person is told the model answered nothing.
        pytest.param(fake.Reply(text="```\n```"), LLMEmptyAnswer, id="empty-code-fence"),
        pytest.param(fake.Reply(text="&nbsp;"), LLMEmptyAnswer, id="nbsp"),
    ],
)
async def test_empty_answer_is_an_error_not_a_turn(
    services: Services, fake_llm: FakeLLM, action: fake.Action, expected: type[LLMError]
) -> None:
    """An empty assistant turn would be sent with every later request, and some providers refuse those."""
    dialog = await dialog_for(services)
    fake_llm.enqueue(action)
    with pytest.raises(LLMError) as caught:
        await ask(services, dialog, "hi")
    assert type(caught.value) is expected
    assert await used(services) == 0
    assert await stored() == []
    assert await LLMRequest.count() == 0


@pytest.mark.parametrize("send_headers", [False, True], ids=["before-headers", "during-body"])
async def test_timeout_refunds_and_stores_nothing(
    make_services: ServicesFactory, fake_llm: FakeLLM, send_headers: bool
) -> None:
    async with make_services(openrouter_timeout=0.3) as services:
        fake_llm.enqueue(fake.Hang(send_headers=send_headers))
        with pytest.raises(LLMTimeout):
            await ask(services, await dialog_for(services), "hi")
        assert await used(services) == 0
        assert await stored() == []
        assert await LLMRequest.count() == 0


async def test_an_answer_the_database_refuses_to_keep_costs_nothing(
    services: Services, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not an outage (which keeps the answer, unsaved, and its cost): the statement itself fails, and the person is
    # told of a failure.
    dialog = await dialog_for(services)

    async def refused_store(*args: Any) -> None:
        raise sqlite3.IntegrityError("CHECK constraint failed")

    monkeypatch.setattr(services.chat, "_store", refused_store)
    reply = Reply()
    with pytest.raises(sqlite3.IntegrityError):
        async for _ in services.chat.stream_reply(dialog, "hi", reply=reply):
            pass
    assert reply.text == "Echo: hi" and not reply.charged
    assert await used(services) == 0
    monkeypatch.undo()
    assert await ask(services, dialog, "again") == "Echo: again"
    assert await used(services) == 1


async def test_the_reply_knows_the_code_block_the_previous_answer_ended_inside(
    services: Services, fake_llm: FakeLLM
) -> None:
    dialog = await dialog_for(services)
    fake_llm.enqueue(fake.Reply(text="Вот:\n\n```python\ndef f():\n    return", finish_reason="length"))
    first = Reply()
    await ask(services, dialog, "напиши функцию", reply=first)
    assert first.cut_off and first.open_fence is None
    fake_llm.enqueue(fake.Reply(text=" 1\n```\n\nГотово."))
    going_on = Reply()
    await ask(services, dialog, "продолжай", reply=going_on)
    assert going_on.open_fence == "```python"
    after = Reply()
    await ask(services, dialog, "спасибо", reply=after)  # the block is closed now
    assert after.open_fence is None


# --- stop and abandon ------------------------------------------------------------------------------------


async def test_the_reply_is_complete_when_the_text_ends_before_it_is_stored(
    services: Services, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_llm.enqueue(fake.Reply(text="one two three"))
    dialog = await dialog_for(services)
    reply = Reply()
    at_store: list[bool] = []
    store = services.chat._store

    async def recording_store(dialog: Dialog, content: Content, reply: Reply, started: datetime) -> None:
        at_store.append(reply.complete)
        await store(dialog, content, reply, started)

    monkeypatch.setattr(services.chat, "_store", recording_store)
    while_streaming = [reply.complete async for _ in services.chat.stream_reply(dialog, "hi", reply=reply)]
    assert while_streaming == [False, False, False]
    assert at_store == [True]


async def test_stop_keeps_the_partial_answer(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply.slow(200, 20.0))
    full = fake.Reply.slow(200, 20.0).text
    assert full is not None
    dialog = await dialog_for(services)
    stop = asyncio.Event()
    reply = Reply()
    pieces: list[str] = []
    async for piece in services.chat.stream_reply(dialog, "tell me a long story", stop=stop, reply=reply):
        pieces.append(piece)
        if len(pieces) == 2:
            stop.set()

    assert reply.stopped
    assert not reply.complete
    assert reply.text == "".join(pieces)
    assert 2 <= len(pieces) < 200
    assert full.startswith(reply.text)
    assert await stored() == [("user", "tell me a long story"), ("assistant", reply.text)]
    assert await used(services) == 1
    row = await LLMRequest.select().where(LLMRequest.telegram_id == ANN).first()
    assert row is not None
    assert row["status"] == "stopped"
    # The HTTP stream was really closed, so OpenRouter stops generating (and billing).
    await fake_llm.wait_for_cancelled_streams(1)


async def test_a_stop_after_the_whole_text_keeps_the_answer_complete(
    services: Services, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The text is whole once finish_reason arrives; a stop pressed while the usage chunk is on its way is too late
    # to stop anything, and must not lose the usage or mark the answer stopped.
    fake_llm.enqueue(fake.Reply(text="one two three", usage_delay=1.0))
    dialog = await dialog_for(services)
    stop = asyncio.Event()
    reply = Reply()
    stream = services.chat.llm.stream

    async def stream_and_press_stop_once_complete(*args: Any) -> AsyncIterator[StreamEvent]:
        async for event in stream(*args):
            yield event
            if isinstance(event, TextComplete):
                stop.set()

    monkeypatch.setattr(services.chat.llm, "stream", stream_and_press_stop_once_complete)
    assert await ask(services, dialog, "hi", stop=stop, reply=reply) == "one two three"
    assert stop.is_set()
    assert not reply.stopped
    assert reply.finish_reason == "stop"
    assert reply.usage.completion_tokens > 0
    row = await LLMRequest.select().where(LLMRequest.telegram_id == ANN).first()
    assert row is not None
    assert (row["status"], row["completion_tokens"]) == ("ok", reply.usage.completion_tokens)


async def test_stop_before_the_first_token_costs_nothing(services: Services, fake_llm: FakeLLM) -> None:
    reply = await stopped_before_the_first_token(services, fake_llm)
    assert reply.stopped
    assert await used(services) == 0
    assert await stored() == []
    assert await LLMRequest.count() == 0
    await fake_llm.wait_for_cancelled_streams(1)


async def test_a_stop_before_anything_to_show_costs_nothing(services: Services, fake_llm: FakeLLM) -> None:
    """Stopped with only a code fence opened: the person saw no answer, so it is not kept or counted."""
    fake_llm.enqueue(fake.Reply(text="```python\n\nprint(1)", tokens_per_second=0.05))
    dialog = await dialog_for(services)
    stop = asyncio.Event()
    reply = Reply()
    async for _ in services.chat.stream_reply(dialog, "hi", stop=stop, reply=reply):
        stop.set()
    assert reply.text == "```python"
    assert reply.stopped and not reply.charged
    assert await used(services) == 0
    assert await stored() == []


async def test_consumer_that_abandons_the_stream_gets_a_refund(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply.slow(200, 20.0))
    dialog = await dialog_for(services)
    stream = services.chat.stream_reply(dialog, "tell me a long story")
    async for _ in stream:
        break
    await stream.aclose()
    assert await used(services) == 0
    assert await stored() == []
    # The model was paid for what it wrote: the request is in the usage figures, as stopped.
    assert await LLMRequest.select(LLMRequest.telegram_id, LLMRequest.status) == [
        {"telegram_id": dialog.telegram_id, "status": "stopped"}
    ]
    await fake_llm.wait_for_cancelled_streams(1)


async def test_an_answer_abandoned_by_an_erasure_leaves_no_usage(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply.slow(200, 20.0))
    dialog = await dialog_for(services)
    stream = services.chat.stream_reply(dialog, "tell me a long story")
    async for _ in stream:
        break
    assert dialog.telegram_id is not None and await services.users.delete(dialog.telegram_id)
    await stream.aclose()
    assert await LLMRequest.count() == 0
    await fake_llm.wait_for_cancelled_streams(1)


async def test_dropped_stream_is_refunded_when_collected(services: Services, fake_llm: FakeLLM) -> None:
    """A consumer that breaks out of the loop without closing the stream: asyncio closes it when it is collected."""
    fake_llm.enqueue(fake.Reply.slow(200, 20.0))
    dialog = await dialog_for(services)
    stream = services.chat.stream_reply(dialog, "tell me a long story")
    async for _ in stream:
        break
    del stream
    await fake_llm.wait_for_cancelled_streams(1)
    for _ in range(500):
        if await used(services) == 0:
            break
        await asyncio.sleep(0.01)
    assert await used(services) == 0
    assert await stored() == []


async def test_cancelled_consumer_gets_a_refund(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply.slow(200, 20.0))
    dialog = await dialog_for(services)
    first_piece = asyncio.Event()

    async def consume() -> None:
        async for _ in services.chat.stream_reply(dialog, "tell me a long story"):
            first_piece.set()

    task = asyncio.create_task(consume())
    await first_piece.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await used(services) == 0
    assert await stored() == []
    assert await LLMRequest.select(LLMRequest.status) == [{"status": "stopped"}]
    await fake_llm.wait_for_cancelled_streams(1)


async def test_turns_are_stored_only_after_the_answer_completes(services: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply(text="one two three four"))
    dialog = await dialog_for(services)
    seen: list[list[tuple[str, Any]]] = []
    async for _ in services.chat.stream_reply(dialog, "count"):
        seen.append(await stored())
    assert seen and all(snapshot == [] for snapshot in seen)
    assert await stored() == [("user", "count"), ("assistant", "one two three four")]


TRICKY_TEXTS = (
    '{"role": "system", "content": "x"}',
    "null",
    "123",
    "true",
    '"quoted"',
    "[1, 2]",
    "Привет, мир 👋",
    "back\\slash\ttab\nline\u2028record\x1eseparator",
    "",
)


async def tricky_texts_round_trip(fake_llm: FakeLLM, send: Callable[[str], Awaitable[object]]) -> None:
    """Each of ``TRICKY_TEXTS`` sent and echoed; the next request's context is all of them, as they were."""
    for text in TRICKY_TEXTS:
        fake_llm.enqueue(fake.Reply(text=text or "empty"))
        await send(text)
    await send("next")
    expected: list[dict[str, Any]] = []
    for text in TRICKY_TEXTS:
        expected += [{"role": "user", "content": text}, {"role": "assistant", "content": text or "empty"}]
    assert fake_llm.requests[-1].messages[:-1] == expected


async def test_any_text_round_trips_through_the_context(services: Services, fake_llm: FakeLLM) -> None:
    await services.subscriptions.grant(ANN, 1)  # premium's limit covers every request below
    dialog = await dialog_for(services)
    await tricky_texts_round_trip(fake_llm, lambda text: ask(services, dialog, text))


async def test_any_text_round_trips_through_a_senders_context(one_trip: Services, fake_llm: FakeLLM) -> None:
    # The one-trip read hands the stored JSON on to the request undecoded (``StoredJSON``).
    await one_trip.subscriptions.grant(ANN, 1)
    await tricky_texts_round_trip(fake_llm, lambda text: ask_as(one_trip, Person(ANN, "Ann"), text))


# --- a sender not yet touched: one round trip on PostgreSQL ---------------------------------------------


async def ask_as(services: Services, person: Person, text: str, **kwargs: Any) -> tuple[str, Reply]:
    reply = Reply()
    pieces = [p async for p in services.chat.stream_sender_reply(person, text, reply=reply, **kwargs)]
    return "".join(pieces), reply


@pytest.fixture
def one_trip(services: Services) -> Services:
    if not services.chat.opens_in_one_trip:
        pytest.skip("PostgreSQL only: SQLite touches, reserves and reads in separate statements")
    return services


async def commit_mode(services: Services, statement: Callable[[], Any]) -> str:
    """``synchronous_commit`` in the transaction ``statement`` ran in, seen from inside it before it commits."""
    async with services.database.transaction():
        await statement()
        rows = await User.raw("SHOW synchronous_commit")
        return str(rows[0]["synchronous_commit"])


async def test_a_messages_statements_commit_without_waiting_for_the_disk_and_nothing_else_does(
    one_trip: Services,
) -> None:
    person = Person(ANN, "Ann")
    account = await one_trip.users.touch(person)
    assert await commit_mode(one_trip, lambda: one_trip.users.get(ANN)) == "on"
    assert await commit_mode(one_trip, lambda: one_trip.users.set_role(ANN, "Be brief")) == "on"
    # The sender's upsert alone commits lazily; inside a transaction it leaves that transaction's commit alone.
    assert await commit_mode(one_trip, lambda: raw(User, TOUCH_LAZILY_SQL, *touch_values(person, utcnow()))) == "off"
    assert await commit_mode(one_trip, lambda: one_trip.users.touch(person)) == "on"
    opener = MessageOpener(one_trip.catalog, one_trip.quota)
    assert await commit_mode(one_trip, lambda: opener.open(person)) == "off"
    assert await commit_mode(one_trip, lambda: one_trip.chat.reserve_and_read(ANN, account.model, False)) == "off"
    dialog = one_trip.chat.dialog_for(account)
    stored_answer = one_trip.chat._store(dialog, "hi", Reply(text="hello", complete=True), utcnow())
    assert await commit_mode(one_trip, lambda: stored_answer) == "off"
    # For that transaction only: the pool's connections commit the next statement as before.
    for _ in range(3):
        rows = await raw(User, "SHOW synchronous_commit")
        assert rows[0]["synchronous_commit"] == "on"
    assert [role for role, _ in await stored()] == ["user", "assistant"]


def writes_and_their_commits(trace: list[str]) -> list[tuple[str, str]]:
    """Each write statement of ``trace`` (an SQLite connection's traced statements) with the ``synchronous`` level
    it ran under: ``FULL`` until a ``PRAGMA synchronous`` changed it."""
    level, writes = "FULL", []
    for statement in trace:
        words = statement.split()
        if words[:2] == ["PRAGMA", "synchronous"]:
            level = words[-1]
        elif words[0].upper() in {"INSERT", "UPDATE", "DELETE", "COMMIT"}:
            writes.append((words[0].upper(), level))
    return writes


async def test_on_sqlite_a_messages_writes_commit_without_waiting_for_the_disk_and_nothing_else_does(
    services: Services,
) -> None:
    engine = services.database.engine
    if not isinstance(engine, SharedConnectionSQLiteEngine):
        pytest.skip("SQLite only: PostgreSQL's statements are checked above")
    trace: list[str] = []
    await User.count()  # opens the shared connection
    engine._connected().set_trace_callback(trace.append)
    account = await services.users.touch(Person(ANN, "Ann"))
    assert await ask(services, services.chat.dialog_for(account), "hi") == "Echo: hi"
    message = writes_and_their_commits(trace)
    # The upsert, the reservation, the answer's two turns and its request, and their transaction's COMMIT.
    assert message == [("INSERT", "NORMAL")] * 5 + [("COMMIT", "NORMAL")]
    assert sum(statement.startswith("PRAGMA synchronous") for statement in trace) == 1  # no cost per statement
    trace.clear()
    await services.users.set_model(ANN, "test/tiny")
    await services.users.touch(Person(ANN, "Ann"))
    assert writes_and_their_commits(trace) == [("UPDATE", "FULL"), ("INSERT", "NORMAL")]
    # SQLite took the setting: a lazy statement leaves the connection at NORMAL (1) until another one needs FULL.
    level = await asyncio.get_running_loop().run_in_executor(
        engine._worker, lambda: engine._connected().execute("PRAGMA synchronous").fetchone()
    )
    assert level == {"synchronous": 1}
    assert [role for role, _ in await stored()] == ["user", "assistant"]


async def test_the_senders_upsert_alone_is_the_lazy_one(one_trip: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []

    async def spy(table: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(sql)
        return await raw(table, sql, *args, **kwargs)

    monkeypatch.setattr(users_module, "raw", spy)
    await one_trip.users.touch(Person(ANN, "Ann"))
    async with one_trip.database.transaction():
        await one_trip.users.touch(Person(ANN, "Ann"))
    assert sent == [TOUCH_LAZILY_SQL, TOUCH_SQL]


async def test_sqlite_does_not_open_in_one_trip(make_services: ServicesFactory, db_url: str) -> None:
    async with make_services() as services:
        assert services.chat.opens_in_one_trip is not services.database.is_sqlite
        if services.database.is_sqlite:
            with pytest.raises(SenderUndecided):
                await ask_as(services, Person(ANN, "Ann"), "hi")
            assert not await services.users.exists(ANN)


async def test_new_sender_is_created_and_answered(one_trip: Services, fake_llm: FakeLLM) -> None:
    answer, reply = await ask_as(one_trip, Person(ANN, "Ann", "Lee", "ann", "ru"), "hi")
    assert answer == "Echo: hi"
    assert reply.account is not None
    assert (reply.account.telegram_id, reply.account.first_name, reply.account.username) == (ANN, "Ann", "ann")
    assert reply.account.model.id == "test/plain"
    assert not reply.account.premium
    assert reply.reservation is not None
    assert (reply.reservation.used, reply.reservation.limit) == (1, 5)
    assert await one_trip.quota.used_today(ANN) == {"test/plain": 1}
    assert await stored() == [("user", "hi"), ("assistant", "Echo: hi")]
    assert fake_llm.requests[-1].messages == [{"role": "user", "content": "hi"}]
    account = await one_trip.users.get(ANN)
    assert (account.first_name, account.username) == ("Ann", "ann")


async def test_sender_names_are_refreshed(one_trip: Services) -> None:
    await one_trip.users.touch(Person(ANN, "Old", username="old"))
    _, reply = await ask_as(one_trip, Person(ANN, "New", username="new"), "hi")
    assert reply.account is not None
    assert (reply.account.first_name, reply.account.username) == ("New", "new")
    assert (await one_trip.users.get(ANN)).username == "new"


async def test_sender_gets_role_model_and_context(one_trip: Services, fake_llm: FakeLLM) -> None:
    await one_trip.users.touch(Person(ANN, "Ann"))
    await one_trip.users.set_role(ANN, "Be brief.")
    await one_trip.users.set_model(ANN, "test/eyes")
    await ask_as(one_trip, Person(ANN, "Ann"), "first")
    await ask_as(one_trip, Person(BOB, "Bob"), "someone else's")
    _, reply = await ask_as(one_trip, Person(ANN, "Ann"), "second")
    assert reply.account is not None and reply.account.role == "Be brief."
    assert fake_llm.requests[-1].model == "test/eyes"
    assert fake_llm.requests[-1].max_tokens == 3000
    assert fake_llm.requests[-1].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Echo: first"},
        {"role": "user", "content": "second"},
    ]
    assert await one_trip.quota.used_today(ANN) == {"test/eyes": 2}


async def test_sender_over_quota_is_refused_before_any_llm_call(one_trip: Services, fake_llm: FakeLLM) -> None:
    person = Person(ANN, "Ann")
    for index in range(5):
        await ask_as(one_trip, person, f"question {index}")
    with pytest.raises(QuotaExceeded) as caught:
        await ask_as(one_trip, person, "one more")
    assert (caught.value.model_id, caught.value.limit) == ("test/plain", 5)
    assert fake_llm.request_count == 5
    assert await one_trip.quota.used_today(ANN) == {"test/plain": 5}
    assert len(await stored()) == 10


async def test_concurrent_senders_never_overspend_the_quota(one_trip: Services, fake_llm: FakeLLM) -> None:
    person = Person(ANN, "Ann")
    await ask_as(one_trip, person, "warm-up")
    results = await asyncio.gather(
        *(ask_as(one_trip, person, f"at once {i}") for i in range(8)), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert (len(results) - len(refused), len(refused)) == (4, 4)
    assert fake_llm.request_count == 5
    assert await one_trip.quota.used_today(ANN) == {"test/plain": 5}


async def test_premium_sender_gets_the_premium_model_and_limit(one_trip: Services, fake_llm: FakeLLM) -> None:
    await one_trip.users.touch(Person(ANN, "Ann"))
    await one_trip.subscriptions.grant(ANN, 30)
    await one_trip.users.set_model(ANN, "test/premium")
    _, reply = await ask_as(one_trip, Person(ANN, "Ann"), "hi")
    assert reply.account is not None and reply.account.premium
    assert reply.reservation is not None
    assert (reply.reservation.model_id, reply.reservation.limit) == ("test/premium", 3)
    assert fake_llm.requests[-1].model == "test/premium"


async def test_premium_model_without_premium_is_left_to_touch(one_trip: Services, fake_llm: FakeLLM) -> None:
    await one_trip.users.touch(Person(ANN, "Ann"))
    await one_trip.subscriptions.grant(ANN, 30)
    await one_trip.users.set_model(ANN, "test/premium")
    await one_trip.subscriptions.revoke(ANN)
    with pytest.raises(SenderUndecided):
        await ask_as(one_trip, Person(ANN, "Ann"), "hi")
    assert fake_llm.request_count == 0
    assert await one_trip.quota.used_today(ANN) == {}
    assert await stored() == []
    account = await one_trip.users.touch(Person(ANN, "Ann"))
    assert account.model_reset and account.model.id == "test/plain"


@pytest.mark.parametrize("stored", [None, "test/plain", "test/premium", "vendor/retired"])
@pytest.mark.parametrize("premium", [False, True], ids=["free", "premium"])
@pytest.mark.parametrize("used_up", [False, True], ids=["quota-left", "used-up"])
async def test_the_one_trip_statement_decides_as_the_services_do(
    one_trip: Services, stored: str | None, premium: bool, used_up: bool
) -> None:
    """The statement's SQL and the services' Python each decide which model a message goes to and its limit: they
    must agree. The statement leaves to ``touch`` what the services would reset, or refuse for want of premium."""
    person = Person(ANN, "Ann")
    await one_trip.users.touch(person)
    if premium:
        await one_trip.subscriptions.grant(ANN, 30)
    await User.update({User.model: stored}).where(User.telegram_id == ANN)
    account = await one_trip.users.get(ANN)  # read only: the model requests go to, as the services see it
    reset = stored is not None and account.model.id != stored
    limit = account.model.daily_limit(account.premium)
    if used_up and limit:
        day = one_trip.quota.today()
        await DailyUsage.insert(DailyUsage(telegram_id=ANN, model=account.model.id, day=day, used=limit))
    before = await one_trip.quota.used_today(ANN)

    opened = await MessageOpener(one_trip.catalog, one_trip.quota).open(person)

    if reset or limit == 0:
        assert opened is None
        assert await one_trip.quota.used_today(ANN) == before
        return
    assert opened is not None
    assert (opened.account.model.id, opened.limit, opened.account.premium) == (account.model.id, limit, premium)
    assert (opened.used is None) == used_up


async def test_a_model_gone_from_the_catalog_is_left_to_touch(one_trip: Services, fake_llm: FakeLLM) -> None:
    """As on every other path, the person hears their model is gone before the default answers for its quota."""
    await one_trip.users.touch(Person(ANN, "Ann"))
    await User.update({User.model: "vendor/retired"}).where(User.telegram_id == ANN)
    with pytest.raises(SenderUndecided):
        await ask_as(one_trip, Person(ANN, "Ann"), "hi")
    assert fake_llm.request_count == 0
    assert await one_trip.quota.used_today(ANN) == {}
    account = await one_trip.users.touch(Person(ANN, "Ann"))
    assert account.model_reset and account.model.id == "test/plain"
    _, reply = await ask_as(one_trip, Person(ANN, "Ann"), "hi")
    assert reply.account is not None and reply.account.model.id == "test/plain"
    assert fake_llm.requests[-1].model == "test/plain"
    assert await one_trip.quota.used_today(ANN) == {"test/plain": 1}


async def test_failed_sender_reply_is_refunded(one_trip: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Error(status=503, message="No provider"))
    with pytest.raises(LLMUnavailable):
        await ask_as(one_trip, Person(ANN, "Ann"), "hi")
    assert await one_trip.quota.used_today(ANN) == {"test/plain": 0}
    assert await stored() == []
    assert await one_trip.users.exists(ANN)


async def test_abandoned_sender_reply_is_refunded(one_trip: Services, fake_llm: FakeLLM) -> None:
    fake_llm.enqueue(fake.Reply.slow(200, 20.0))
    stream = one_trip.chat.stream_sender_reply(Person(ANN, "Ann"), "tell me a long story", reply=Reply())
    async for _ in stream:
        break
    await stream.aclose()
    assert await used(one_trip) == 0
    assert await stored() == []


# --- cancelled while the first statement is out -----------------------------------------------------------------


@pytest.fixture
def held_postgres(db_url: str) -> Iterator[TcpProxy]:
    """A proxy in front of this test's PostgreSQL database whose answers the test can hold back."""
    if db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only: a proxy holds the server's answers")
    parts = urlsplit(db_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
    try:
        yield proxy
    finally:
        proxy.close()


async def used_on_server(db_url: str) -> int:
    connection = await asyncpg.connect(db_url)
    try:
        total = await connection.fetchval("SELECT COALESCE(SUM(used), 0) FROM daily_usage WHERE telegram_id = $1", ANN)
        return int(total)
    finally:
        await connection.close()


@pytest.mark.parametrize("opening", ["one trip", "reserve and read"])
async def test_a_message_cancelled_after_its_request_was_taken_gets_it_back(
    make_services: ServicesFactory, held_postgres: TcpProxy, db_url: str, fake_llm: FakeLLM, opening: str
) -> None:
    """A shutdown can cut a message off after the server has taken its request but before the answer arrives: the
    request is given back once that answer is in."""
    async with make_services(database_url=held_postgres.url(db_url), database_pool_size=1) as services:
        dialog = await dialog_for(services)

        def message() -> AsyncGenerator[str, None]:
            if opening == "one trip":
                return services.chat.stream_sender_reply(Person(ANN, "Ann"), "hi", reply=Reply())
            return services.chat.stream_reply(dialog, "hi")

        # The first message prepares the statement on the one pooled connection: the second is sent at once.
        assert "".join([piece async for piece in message()])
        assert await used_on_server(db_url) == 1
        held_postgres.hold()
        second = asyncio.create_task(anext(message()))
        for _ in range(500):
            if await used_on_server(db_url) == 2:
                break
            await asyncio.sleep(0.01)
        assert await used_on_server(db_url) == 2  # taken on the server; its answer is held
        second.cancel()
        await asyncio.sleep(0.2)
        held_postgres.release()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await used_on_server(db_url) == 1
        assert fake_llm.request_count == 1


async def test_a_message_cancelled_while_sqlite_is_locked_costs_nothing(
    make_services: ServicesFactory, db_url: str, fake_llm: FakeLLM
) -> None:
    """On SQLite the statement runs in a worker thread that a cancellation does not stop: it takes the request
    once the lock is free, and the request is given back."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    async with make_services() as services:
        dialog = await dialog_for(services)
        other = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing: the reservation waits for the lock
        try:
            message = asyncio.create_task(anext(services.chat.stream_reply(dialog, "hi")))
            await asyncio.sleep(0.3)
            message.cancel()
            await asyncio.sleep(0.1)
        finally:
            other.execute("COMMIT")
            other.close()
        with pytest.raises(asyncio.CancelledError):
            await message
        assert await used(services) == 0
        assert fake_llm.request_count == 0


async def test_a_cancelled_message_whose_give_back_fails_stays_cancelled_and_gets_it_back_later(
    services: Services, refunds_fail_once: FlakyRefund
) -> None:
    """The database that held up the first statement may refuse the give-back too: the message is cancelled all the
    same (the failure does not replace its CancelledError), and the request is given back on a later try."""
    dialog = await dialog_for(services)
    sent, answered = asyncio.Event(), asyncio.Event()

    async def first_statement() -> Reservation:
        sent.set()
        await answered.wait()
        return await services.quota.reserve(ANN, dialog.model, premium=False)

    message = asyncio.create_task(services.quota.take(first_statement(), lambda reservation: reservation))
    await sent.wait()
    message.cancel()
    await asyncio.sleep(0.05)
    answered.set()
    with pytest.raises(asyncio.CancelledError):
        await message
    await refunds_fail_once.later()
    assert await used(services) == 0


# --- images and files of earlier turns ----------------------------------------------------------------------


def image_number(n: int) -> list[dict[str, Any]]:
    url = f"data:image/png;base64,{base64.b64encode(f'image {n}'.encode()).decode()}"
    return [{"type": "text", "text": f"look {n}"}, {"type": "image_url", "image_url": {"url": url}}]


def urls_of(*numbers: int) -> list[str]:
    return [image_number(n)[1]["image_url"]["url"] for n in numbers]


SCAN: list[dict[str, Any]] = [
    {"type": "text", "text": '<file name="scan.pdf" attached="true" />\n\nread it'},
    {"type": "file", "file": {"filename": "scan.pdf", "file_data": "data:application/pdf;base64," + "A" * 30_000}},
]
SCAN_FORGOTTEN = [SCAN[0], {"type": "text", "text": OLD_FILE_PLACEHOLDER.format(name="scan.pdf")}]


def test_only_the_latest_turns_with_media_keep_them() -> None:
    history = [Turn("user", SCAN, estimate_content(SCAN))]
    for n in range(1, 5):
        history += [Turn("user", image_number(n), 1004), Turn("assistant", f"answer {n}", 3)]
    recent = with_recent_media(history, "and now?")
    assert [turn is old for turn, old in zip(recent, history, strict=True)] == [False] + [True] * 8
    assert recent[0].content == SCAN_FORGOTTEN
    assert recent[0].tokens == estimate_content(SCAN_FORGOTTEN) < history[0].tokens
    # A new message with an image takes one of the places.
    recent = with_recent_media(history, image_number(5))
    assert [turn.content for turn in recent[:3]] == [
        SCAN_FORGOTTEN,
        [{"type": "text", "text": "look 1"}, {"type": "text", "text": OLD_IMAGE_PLACEHOLDER}],
        "answer 1",
    ]
    assert recent[3:] == history[3:]
    assert with_recent_media(history, "hi", keep=5) == history


def scan_of(size: int, name: str = "scan.pdf") -> list[dict[str, Any]]:
    encoded = base64.b64encode(b"%" * size).decode()
    return [
        {"type": "text", "text": f'<file name="{name}" attached="true" />'},
        {"type": "file", "file": {"filename": name, "file_data": f"data:application/pdf;base64,{encoded}"}},
    ]


def test_media_kept_from_the_conversation_fit_one_byte_budget_newest_first() -> None:
    half = MAX_REQUEST_MEDIA_BYTES // 2
    history = [
        Turn("user", scan_of(1000, "old.pdf"), 10),
        Turn("assistant", "read", 1),
        Turn("user", scan_of(half, "big.pdf"), 10),
        Turn("assistant", "read", 1),
        Turn("user", scan_of(half - 100, "last.pdf"), 10),
        Turn("assistant", "read", 1),
    ]
    # Only two turns with media, far fewer than MEDIA_TURNS_KEPT, yet both big ones do not fit beside the new scan.
    recent = with_recent_media(history, scan_of(200, "new.pdf"))
    assert recent[4] is history[4]
    # The one that does not fit is left out, and so is every older one, small as it is.
    assert recent[2].content == [
        scan_of(1, "big.pdf")[0],
        {"type": "text", "text": OLD_FILE_PLACEHOLDER.format(name="big.pdf")},
    ]
    assert recent[0].content == [
        scan_of(1, "old.pdf")[0],
        {"type": "text", "text": OLD_FILE_PLACEHOLDER.format(name="old.pdf")},
    ]
    # Without a new scan both fit.
    assert with_recent_media(history, "and now?")[2:] == history[2:]


def test_turns_whose_media_were_dropped_are_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[Turn] = []
    original = Turn.decoded

    def counting(turn: Turn) -> Content:
        decoded.append(turn)
        return original(turn)

    monkeypatch.setattr(Turn, "decoded", counting)
    documents = [{"type": "text", "text": '<file name="a.txt">"file" "image_url"</file>'}]
    history = [
        Turn("user", encode_content(SCAN_FORGOTTEN).encode(), 10, None, 1),
        Turn("user", encode_content(documents).encode(), 10, None, 2),
        Turn("user", encode_content(SCAN).encode(), 10, None, 3),
    ]
    assert with_recent_media(history, "and now?") == history
    assert decoded == [history[2]]


async def test_a_model_without_vision_does_not_get_scans_sent_earlier(services: Services) -> None:
    history = [Turn("user", encode_content(SCAN).encode(), 1004, None, 1), Turn("assistant", "read", 1)]
    blind = build_messages(await dialog_for(services, model_id="test/plain"), history, "next")
    assert blind[0]["content"] == SCAN_FORGOTTEN


async def test_stored_turns_go_into_the_request_as_they_were_stored(services: Services) -> None:
    text = '"quoted" \\ Привет 👋'
    parts: list[dict[str, Any]] = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": IMAGE_URL}},
    ]
    history = [
        Turn("user", encode_content(parts).encode(), 1004, None, 1),
        Turn("assistant", encode_content(text).encode(), 9, "test/eyes", 2),
    ]
    seeing = build_messages(await dialog_for(services, model_id="test/eyes"), history, "next")
    # Not decoded: the stored JSON is the request's.
    assert all(isinstance(message["content"], orjson.Fragment) for message in seeing[:2])
    assert orjson.loads(orjson.dumps(seeing)) == [
        {"role": "user", "content": parts},
        {"role": "assistant", "content": text},
        {"role": "user", "content": "next"},
    ]
    # A model without vision gets the image's placeholder; the text turn is still sent as stored.
    blind = build_messages(await dialog_for(services, model_id="test/plain"), history, "next")
    assert blind[0]["content"] == [parts[0], {"type": "text", "text": IMAGE_PLACEHOLDER}]
    assert isinstance(blind[1]["content"], orjson.Fragment)
    assert orjson.loads(orjson.dumps(blind))[1] == {"role": "assistant", "content": text}


async def test_old_images_are_not_sent_again_nor_kept(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/eyes")
    dialog.premium = True  # premium's limit covers every request below
    for n in range(MEDIA_TURNS_KEPT):
        await ask(services, dialog, image_number(n))
    assert fake_llm.requests[-1].image_urls == urls_of(0, 1, 2, 3)

    await ask(services, dialog, image_number(4))
    request = fake_llm.requests[-1]
    assert request.image_urls == urls_of(1, 2, 3, 4)
    assert request.messages[0]["content"] == [
        {"type": "text", "text": "look 0"},
        {"type": "text", "text": OLD_IMAGE_PLACEHOLDER},
    ]
    # The stored context lost the old image too: later requests do not read it again.
    turns = await stored()
    assert turns[0] == ("user", request.messages[0]["content"])
    assert [content for role, content in turns[2::2]] == [image_number(n) for n in range(1, 5)]

    await ask(services, dialog, "and now?")
    assert fake_llm.requests[-1].image_urls == urls_of(1, 2, 3, 4)
    assert len(await stored()) == 12


async def test_an_old_scan_is_not_sent_again(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/eyes")
    dialog.premium = True
    await ask(services, dialog, SCAN)
    for n in range(1, MEDIA_TURNS_KEPT):
        await ask(services, dialog, image_number(n))
    assert fake_llm.requests[-1].messages[0]["content"] == SCAN

    await ask(services, dialog, image_number(MEDIA_TURNS_KEPT))
    assert fake_llm.requests[-1].messages[0]["content"] == SCAN_FORGOTTEN
    row = await DialogMessage.select(DialogMessage.tokens).where(DialogMessage.telegram_id == ANN).first()
    assert row is not None and row["tokens"] == estimate_content(SCAN_FORGOTTEN)


async def test_old_images_in_a_stored_context_are_left_out_of_a_sender_reply(
    one_trip: Services, fake_llm: FakeLLM
) -> None:
    """A context stored before old images were dropped (or by a message that could not drop them yet)."""
    await one_trip.users.touch(Person(ANN, "Ann"))
    await one_trip.users.set_model(ANN, "test/eyes")
    await StoredConversation(ANN).append(
        [Turn(role, image_number(n) if role == "user" else "ok", 5) for n in range(6) for role in ("user", "assistant")]
    )
    await ask_as(one_trip, Person(ANN, "Ann"), "and now?")
    assert fake_llm.requests[-1].image_urls == urls_of(2, 3, 4, 5)
    # And the stored context lost them: the next message does not read them again.
    turns = await stored()
    assert [content for role, content in turns[0:4:2]] == [
        [{"type": "text", "text": f"look {n}"}, {"type": "text", "text": OLD_IMAGE_PLACEHOLDER}] for n in (0, 1)
    ]
    assert [content for role, content in turns[4:12:2]] == [image_number(n) for n in range(2, 6)]


async def test_images_of_one_request_over_the_cap_are_refused(services: Services, fake_llm: FakeLLM) -> None:
    dialog = await dialog_for(services, model_id="test/eyes")
    encoded = base64.b64encode(b"x" * (MAX_REQUEST_MEDIA_BYTES // 3 + 1)).decode()
    image = {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{encoded}"}}
    with pytest.raises(ImagesTooLarge) as caught:
        await ask(services, dialog, [{"type": "text", "text": "album"}, image, image, image])
    assert caught.value.count == 3
    assert fake_llm.request_count == 0
    assert await used(services) == 0
    assert await stored() == []


async def test_an_answer_stands_when_old_images_cannot_be_dropped(
    services: Services, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: StoredConversation, turns: list[Turn]) -> None:
        raise OSError("the database went away")

    dialog = await dialog_for(services, model_id="test/eyes")
    dialog.premium = True
    for n in range(MEDIA_TURNS_KEPT):
        await ask(services, dialog, image_number(n))
    monkeypatch.setattr(StoredConversation, "rewrite", broken)
    assert (await ask(services, dialog, image_number(MEDIA_TURNS_KEPT))).startswith("Echo: look 4")
    assert fake_llm.requests[-1].image_urls == urls_of(1, 2, 3, 4)
    assert (await stored())[0] == ("user", image_number(0))
    assert await used(services) == MEDIA_TURNS_KEPT + 1
