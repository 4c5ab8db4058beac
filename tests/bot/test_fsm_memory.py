"""The in-process FSM storage keeps only chats that have a state or data, under a real dispatcher too; the dispatcher
uses the in-process state it is given."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import DataNotDictLikeError
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import Message, Update

from pomogator.bot.factory import create_dispatcher
from pomogator.bot.fsm_memory import SparseMemoryStorage
from pomogator.bot.middlewares import ChatOrderMiddleware
from pomogator.bot.shared import open_shared_state
from pomogator.container import build_services
from tests.conftest import make_settings

BOT_ID = 42


def key(chat_id: int) -> StorageKey:
    return StorageKey(bot_id=BOT_ID, chat_id=chat_id, user_id=chat_id)


class Form(StatesGroup):
    waiting = State()


async def test_reading_creates_nothing() -> None:
    storage = SparseMemoryStorage()
    for chat_id in range(100):
        assert await storage.get_state(key(chat_id)) is None
        assert await storage.get_data(key(chat_id)) == {}
        assert await storage.get_value(key(chat_id), "email", "none") == "none"
    assert storage.chats == 0
    assert storage  # an empty storage is not falsy: `storage or MemoryStorage()` keeps it


async def test_a_state_and_data_are_kept_until_cleared() -> None:
    storage = SparseMemoryStorage()
    await storage.set_state(key(1), Form.waiting)
    await storage.update_data(key(1), {"plan": "year"})
    await storage.set_data(key(2), {"plan": "month"})
    assert storage.chats == 2
    assert await storage.get_state(key(1)) == Form.waiting.state
    assert await storage.get_data(key(1)) == {"plan": "year"}
    assert await storage.get_value(key(2), "plan") == "month"
    assert await storage.get_state(key(3)) is None

    await storage.set_state(key(1), None)
    assert storage.chats == 2  # its data is still there
    await storage.set_data(key(1), {})
    await storage.set_data(key(2), {})
    assert storage.chats == 0
    assert await storage.get_data(key(1)) == {}


async def test_data_is_copied_in_and_out() -> None:
    storage = SparseMemoryStorage()
    given = {"plan": "year"}
    await storage.set_data(key(1), given)
    given["plan"] = "changed"
    read = await storage.get_data(key(1))
    read["plan"] = "changed too"
    assert await storage.get_data(key(1)) == {"plan": "year"}


async def test_data_must_be_a_dict() -> None:
    storage = SparseMemoryStorage()
    with pytest.raises(DataNotDictLikeError):
        await storage.set_data(key(1), [("plan", "year")])  # type: ignore[arg-type]
    assert storage.chats == 0


# --- under aiogram's dispatcher, which reads every update's state ----------------------------------------------


@pytest_asyncio.fixture
async def dispatcher() -> AsyncIterator[tuple[Dispatcher, Bot, SparseMemoryStorage]]:
    storage = SparseMemoryStorage()
    router = Router()

    @router.message(Command("form"))
    async def on_form(message: Message, state: FSMContext) -> None:
        await state.set_state(Form.waiting)
        await state.update_data(started=message.message_id)

    @router.message(StateFilter(Form.waiting), F.text)
    async def on_answer(message: Message, state: FSMContext) -> None:
        await state.clear()

    @router.message(F.text)
    async def on_text(message: Message, state: FSMContext) -> None:
        assert await state.get_state() is None

    dispatcher = Dispatcher(storage=storage)
    dispatcher.include_router(router)
    bot = Bot(f"{BOT_ID}:TEST")
    try:
        yield dispatcher, bot, storage
    finally:
        await bot.session.close()


def text_update(bot: Bot, update_id: int, chat_id: int, text: str) -> Update:
    message = {
        "message_id": update_id,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "Test"},
        "text": text,
    }
    return Update.model_validate({"update_id": update_id, "message": message}, context={"bot": bot})


async def test_a_thousand_people_writing_leave_nothing_behind(
    dispatcher: tuple[Dispatcher, Bot, SparseMemoryStorage],
) -> None:
    dp, bot, storage = dispatcher
    for chat_id in range(1, 1001):
        await dp.feed_update(bot, text_update(bot, chat_id, chat_id, "hello"))
    assert storage.chats == 0

    await dp.feed_update(bot, text_update(bot, 2001, 5, "/form"))
    assert storage.chats == 1
    assert await storage.get_state(key(5)) == Form.waiting.state
    assert await storage.get_data(key(5)) == {"started": 2001}
    await dp.feed_update(bot, text_update(bot, 2002, 5, "me@example.com"))
    assert storage.chats == 0


async def test_the_dispatcher_uses_the_shared_state_it_is_given_even_when_empty(tmp_path: Path) -> None:
    """The in-process locks and storage are empty (``len`` 0) until used; they must not be taken for none given."""
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    async with build_services(settings, migrate=True) as services, open_shared_state(settings) as shared:
        dispatcher = create_dispatcher(services, chat_locks=shared.chat_locks, storage=shared.storage)
        assert dispatcher.fsm.storage is shared.storage
        order = [m for m in dispatcher.update.outer_middleware if isinstance(m, ChatOrderMiddleware)]
        assert [m.locks for m in order] == [shared.chat_locks]
