"""Pending forms (the /role prompt, the receipt e-mail prompt) end when the user turns to something else.

End to end (the real bot with FakeTelegram, FakeLLM and FakeYooKassa, receipts on), and ``FormMiddleware`` under a
dispatcher of its own for what a test cannot wait for (a form abandoned for an hour) or hardly provoke (Stop pressed
while a form waits).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import CallbackQuery, Message, Update

from pomogator.billing import texts as billing_texts
from pomogator.bot import texts
from pomogator.bot.callbacks import StopCallback
from pomogator.bot.factory import create_bot, create_dispatcher
from pomogator.bot.fsm_memory import SparseMemoryStorage
from pomogator.bot.middlewares.forms import (
    _OPENED,
    BESIDE_FORM,
    FORM,
    FORM_TTL_S,
    EarlierMessagesMiddleware,
    FormMiddleware,
    open_form,
)
from pomogator.container import build_services
from pomogator.llm.catalog import load_catalog
from tests.bot.harness import TOKEN, BotHarness
from tests.conftest import make_settings
from tests.fakes.openai_server import Reply
from tests.fakes.telegram_server import FakeTelegram, SentMessage
from tests.fakes.yookassa_server import FakeYooKassa

pytestmark = pytest.mark.asyncio(loop_scope="module")

CATALOG = load_catalog()
OTHER_FREE = next(m for m in CATALOG.models if not m.premium_only and m.id != CATALOG.default.id)
QUESTION = "Сколько будет 2+2?"
ANSWER = f"Echo: {QUESTION}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    """One running bot that sells premium with receipts, so /billing asks for an e-mail first."""
    async with FakeYooKassa() as kassa:
        env = kassa.client_env() | {"POMOGATOR_RECEIPT_ENABLED": "1"}
        async with BotHarness.open(tmp_path_factory.mktemp("forms"), env=env) as h:
            yield h


async def stored_role(h: BotHarness, chat: int) -> str | None:
    async with h.services() as services:
        return (await services.users.get(chat)).role


async def asks_for_email(h: BotHarness, chat: int) -> SentMessage:
    """The user picks a plan and is asked for an e-mail first; returns the prompt."""
    screen = await h.reply_settled(chat, "/billing")
    await h.press_settled(chat, screen, "Месяц")
    prompt = h.tg.sent_messages(chat)[-1]
    assert prompt.text == billing_texts.EMAIL_PROMPT
    return prompt


async def queue_question_behind_an_answer(h: BotHarness, chat: int) -> None:
    """The user asks something and, while the answer streams, sends ``QUESTION``: it waits in the chat's queue."""
    h.llm.enqueue(Reply.slow(20, 2.0))
    h.tg.user_message(chat, "Расскажи про Рим")
    await h.tg.wait_until(lambda: h.tg.drafts(chat).count >= 1, 15, "the first answer's draft")
    h.tg.user_message(chat, QUESTION)


async def answered(h: BotHarness, chat: int) -> None:
    await h.tg.wait_for_message(chat, lambda m: m.text == ANSWER, timeout=20, after_message_id=0)
    await h.settle(quiet=0.3)


# --- end to end ----------------------------------------------------------------------------------------------


def closed(h: BotHarness, chat: int, prompt: SentMessage, text: str) -> None:
    """The prompt says its input was cancelled, and has no buttons left: it asks for nothing any more."""
    shown = h.tg.chats[chat].messages[prompt.message_id]  # as it is now
    assert shown.text == text
    assert shown.button_texts == []


@pytest.mark.slow
async def test_other_commands_end_the_role_prompt_and_say_so(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    prompt = await h.reply_settled(chat, "/role")
    menu = await h.reply_settled(chat, "/model")
    assert "Выберите модель" in (menu.text or "")  # the command itself works as usual
    closed(h, chat, prompt, texts.ROLE_INPUT_CLOSED)
    requests = h.llm.request_count
    assert (await h.reply_settled(chat, QUESTION)).text == ANSWER
    assert h.llm.request_count == requests + 1
    assert await stored_role(h, chat) is None


@pytest.mark.slow
async def test_help_and_profile_leave_the_role_prompt_waiting(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/start")
    prompt = await h.reply_settled(chat, "/role")
    profile = await h.reply_settled(chat, "/profile")
    assert "Профиль" in (profile.text or "")
    assert "Как пользоваться" in ((await h.reply_settled(chat, "/help")).text or "")
    await h.press_settled(chat, menu, texts.MENU_PROFILE)
    await h.press_settled(chat, menu, texts.MENU_HELP)
    assert h.tg.chats[chat].messages[prompt.message_id].button_texts == [texts.ROLE_CANCEL]
    requests = h.llm.request_count
    assert (await h.reply_settled(chat, "Будь краток")).text == texts.ROLE_SAVED
    assert h.llm.request_count == requests
    assert await stored_role(h, chat) == "Будь краток"


@pytest.mark.slow
async def test_an_unknown_command_ends_the_role_prompt_too(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    prompt = await h.reply_settled(chat, "/role")
    assert (await h.reply_settled(chat, "/nonsense")).text == texts.UNKNOWN_COMMAND
    closed(h, chat, prompt, texts.ROLE_INPUT_CLOSED)
    assert (await h.reply_settled(chat, QUESTION)).text == ANSWER
    assert await stored_role(h, chat) is None


@pytest.mark.slow
async def test_cancel_command_cancels_the_role_prompt_like_its_button(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    await h.reply_settled(chat, "/role")
    assert (await h.reply_settled(chat, "/cancel")).text == texts.ROLE_UNCHANGED
    assert (await h.reply_settled(chat, QUESTION)).text == ANSWER
    assert await stored_role(h, chat) is None
    # Typed instead of pressed, the button's word cancels too: it is no role.
    await h.reply_settled(chat, "/role")
    assert (await h.reply_settled(chat, "Отмена")).text == texts.ROLE_UNCHANGED
    assert await stored_role(h, chat) is None
    # Nothing waits any more: /cancel says there is nothing to cancel.
    assert (await h.reply_settled(chat, "/cancel")).text == texts.NOTHING_TO_CANCEL


@pytest.mark.slow
async def test_menu_and_model_buttons_end_the_role_prompt(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/start")
    models = await h.reply_settled(chat, "/model")

    prompt = await h.reply_settled(chat, "/role")
    await h.press_settled(chat, menu, texts.MENU_MODEL)
    closed(h, chat, prompt, texts.ROLE_INPUT_CLOSED)
    assert (await h.reply_settled(chat, QUESTION)).text == ANSWER

    prompt = await h.reply_settled(chat, "/role")
    await h.press_settled(chat, models, OTHER_FREE.title)
    closed(h, chat, prompt, texts.ROLE_INPUT_CLOSED)
    assert (await h.reply_settled(chat, QUESTION)).text == ANSWER
    assert h.llm.requests[-1].model == OTHER_FREE.id
    assert await stored_role(h, chat) is None


@pytest.mark.slow
async def test_a_service_message_during_the_role_prompt_gets_no_reply(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    await h.reply_settled(chat, "/role")
    h.tg.user_content(chat, {"pinned_message": {"message_id": 1, "date": 0, "chat": {"id": chat, "type": "private"}}})
    # Messages of a chat are handled in order: the role's reply comes after whatever the pin got.
    assert (await h.reply_settled(chat, "Будь краток")).text == texts.ROLE_SAVED
    assert texts.ROLE_NOT_TEXT not in [m.text for m in h.tg.sent_messages(chat)]


@pytest.mark.slow
async def test_the_role_prompt_still_takes_its_answer(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/start")
    await h.reply_settled(chat, "/role")
    # Its own menu button opens the prompt again, and it still waits.
    await h.press_settled(chat, menu, texts.MENU_ROLE)
    h.tg.user_sticker(chat)
    assert (await h.tg.wait_for_message(chat)).text == texts.ROLE_NOT_TEXT
    await h.settle(quiet=0.3)
    assert (await h.reply_settled(chat, "Будь краток")).text == texts.ROLE_SAVED
    assert await stored_role(h, chat) == "Будь краток"


async def test_a_role_that_starts_with_a_path_is_a_role_not_a_command(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    await h.reply_settled(chat, "/role")
    role = "/srv/app — корень проекта, отвечай про него"
    assert (await h.reply_settled(chat, role)).text == texts.ROLE_SAVED
    assert await stored_role(h, chat) == role


@pytest.mark.slow
async def test_a_question_sent_before_the_role_prompt_is_answered_not_taken_as_the_role(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/start")
    await queue_question_behind_an_answer(h, chat)
    # Buttons do not queue: the prompt opens while the question still waits for its turn.
    await h.press(chat, menu, texts.MENU_ROLE)
    await answered(h, chat)
    assert texts.ROLE_SAVED not in h.tg.sent_texts(chat)
    assert await stored_role(h, chat) is None
    # The prompt still waits for the role the user sends after it.
    assert (await h.reply_settled(chat, "Будь краток")).text == texts.ROLE_SAVED
    assert await stored_role(h, chat) == "Будь краток"


@pytest.mark.slow
async def test_a_question_sent_before_the_email_prompt_is_answered_not_refused(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    screen = await h.reply_settled(chat, "/billing")
    await queue_question_behind_an_answer(h, chat)
    await h.press(chat, screen, "Месяц")
    await answered(h, chat)
    assert billing_texts.EMAIL_INVALID not in h.tg.sent_texts(chat)
    assert (await h.reply_settled(chat, "/cancel")).text == billing_texts.PURCHASE_CANCELED


@pytest.mark.slow
async def test_other_commands_and_buttons_end_the_email_prompt(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    prompt = await asks_for_email(h, chat)
    await h.reply_settled(chat, "/start")
    closed(h, chat, prompt, billing_texts.PURCHASE_INPUT_CLOSED)
    assert (await h.reply_settled(chat, QUESTION)).text == ANSWER

    menu = await h.reply_settled(chat, "/start")
    prompt = await asks_for_email(h, chat)
    await h.press_settled(chat, menu, texts.MENU_MODEL)
    closed(h, chat, prompt, billing_texts.PURCHASE_INPUT_CLOSED)
    assert (await h.reply_settled(chat, QUESTION)).text == ANSWER
    async with h.services() as services:
        assert (await services.users.get(chat)).email is None

    # Asked for to change a stored one, the prompt says the e-mail stays.
    screen = await h.reply_settled(chat, "/billing")
    await h.press_settled(chat, screen, billing_texts.CHANGE_EMAIL_BUTTON)
    prompt = h.tg.sent_messages(chat)[-1]
    await h.reply_settled(chat, "/model")
    closed(h, chat, prompt, billing_texts.EMAIL_INPUT_CLOSED)


@pytest.mark.slow
async def test_help_and_profile_leave_the_email_prompt_waiting(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    screen = await h.reply_settled(chat, "/billing")
    await h.press_settled(chat, screen, billing_texts.CHANGE_EMAIL_BUTTON)
    await h.reply_settled(chat, "/help")
    await h.reply_settled(chat, "/profile")
    reply = await h.reply_settled(chat, "ann@example.ru")
    assert reply.text == billing_texts.email_saved("ann@example.ru", paying=False)
    async with h.services() as services:
        assert (await services.users.get(chat)).email == "ann@example.ru"


@pytest.mark.slow
async def test_the_email_prompt_still_takes_its_answer_and_cancel(bot: BotHarness) -> None:
    h = bot
    chat = h.new_chat()
    await asks_for_email(h, chat)
    assert (await h.reply_settled(chat, "not an email")).text == billing_texts.EMAIL_INVALID
    # Asked for on the way to paying, the form's cancel is the purchase's.
    assert (await h.reply_settled(chat, "/cancel")).text == billing_texts.PURCHASE_CANCELED
    assert (await h.reply_settled(chat, QUESTION)).text == ANSWER

    # Asked for to change a stored one, it keeps the e-mail as it was.
    async with h.services() as services:
        await services.users.set_email(chat, "ann@example.ru")
    screen = await h.reply_settled(chat, "/billing")
    await h.press_settled(chat, screen, billing_texts.CHANGE_EMAIL_BUTTON)
    assert h.tg.sent_texts(chat)[-1] == billing_texts.EMAIL_CHANGE_PROMPT
    assert (await h.reply_settled(chat, "/cancel")).text == billing_texts.EMAIL_CANCELED


# --- FormMiddleware under a dispatcher of its own --------------------------------------------------------------

BOT_ID = 42
CHAT = 7


class Form(StatesGroup):
    waiting = State()


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest_asyncio.fixture(loop_scope="module")
async def dispatcher() -> AsyncIterator[tuple[Dispatcher, Bot, Clock, list[str]]]:
    """A form, a Stop button and a handler for any text, like the bot's, with what they were given in ``seen``."""
    seen: list[str] = []
    clock = Clock()
    router = Router()

    @router.message(Command("form"))
    async def on_form(message: Message, state: FSMContext) -> None:
        # The bot's prompt would come right after the command.
        await open_form(state, Form.waiting, prompt_id=message.message_id + 1, closed_text="closed", plan="month")

    @router.message(StateFilter(Form.waiting), F.text, ~F.text.startswith("/"), flags={FORM: True})
    async def on_answer(message: Message) -> None:
        seen.append(f"form: {message.text}")  # keeps the form, like a refused e-mail

    @router.message(F.text)
    async def on_text(message: Message) -> None:
        seen.append(f"question: {message.text}")

    @router.callback_query(StopCallback.filter(), flags={BESIDE_FORM: True})
    async def on_stop(query: CallbackQuery) -> None:
        seen.append("stop")

    @router.callback_query()
    async def on_button(query: CallbackQuery) -> None:
        seen.append(f"button: {query.data}")

    dp = Dispatcher(storage=SparseMemoryStorage())
    dp.message.outer_middleware.register(EarlierMessagesMiddleware())
    forms = FormMiddleware(clock=clock)
    dp.message.middleware.register(forms)
    dp.callback_query.middleware.register(forms)
    dp.include_router(router)
    bot = Bot(f"{BOT_ID}:TEST")
    try:
        yield dp, bot, clock, seen
    finally:
        await bot.session.close()


def update(bot: Bot, update_id: int, message_id: int | None = None, **event: Any) -> Update:
    user = {"id": CHAT, "is_bot": False, "first_name": "Test"}
    chat = {"id": CHAT, "type": "private"}
    message = {
        "message_id": update_id * 2 if message_id is None else message_id,
        "date": int(time.time()),
        "chat": chat,
        "from": user,
        "text": "answer",
    }
    if "text" in event:
        payload = {"message": {**message, **event}}
    else:
        payload = {
            "callback_query": {"id": str(update_id), "from": user, "chat_instance": "1", "message": message, **event}
        }
    return Update.model_validate({"update_id": update_id, **payload}, context={"bot": bot})


async def form_state(dp: Dispatcher) -> str | None:
    return await dp.fsm.storage.get_state(StorageKey(bot_id=BOT_ID, chat_id=CHAT, user_id=CHAT))


async def test_a_form_left_alone_for_an_hour_lets_the_next_text_through(
    dispatcher: tuple[Dispatcher, Bot, Clock, list[str]],
) -> None:
    dp, bot, clock, seen = dispatcher
    await dp.feed_update(bot, update(bot, 1, text="/form"))
    await dp.feed_update(bot, update(bot, 2, text="typo@"))
    clock.offset = FORM_TTL_S - 60
    await dp.feed_update(bot, update(bot, 3, text="me@example.ru"))
    assert seen == ["form: typo@", "form: me@example.ru"]
    assert await form_state(dp) == Form.waiting.state

    clock.offset = FORM_TTL_S + 1
    await dp.feed_update(bot, update(bot, 4, text="what is 2+2?"))
    assert seen[2:] == ["question: what is 2+2?"]
    assert await form_state(dp) is None
    assert isinstance(dp.fsm.storage, SparseMemoryStorage) and dp.fsm.storage.chats == 0


async def test_stop_keeps_a_form_and_other_buttons_end_it(
    dispatcher: tuple[Dispatcher, Bot, Clock, list[str]],
) -> None:
    dp, bot, _, seen = dispatcher
    await dp.feed_update(bot, update(bot, 1, text="/form"))
    await dp.feed_update(bot, update(bot, 2, data=StopCallback(answer=5).pack()))
    assert seen == ["stop"]
    assert await form_state(dp) == Form.waiting.state
    await dp.feed_update(bot, update(bot, 3, data="menu:profile"))
    assert await form_state(dp) is None
    await dp.feed_update(bot, update(bot, 4, text="hello"))
    assert seen[1:] == ["button: menu:profile", "question: hello"]


async def test_a_command_ends_a_form(dispatcher: tuple[Dispatcher, Bot, Clock, list[str]]) -> None:
    dp, bot, _, seen = dispatcher
    await dp.feed_update(bot, update(bot, 1, text="/form"))
    await dp.feed_update(bot, update(bot, 2, text="/other"))
    assert await form_state(dp) is None
    await dp.feed_update(bot, update(bot, 3, text="hello"))
    assert seen == ["question: /other", "question: hello"]


async def test_a_message_sent_before_the_prompt_does_not_see_the_form(
    dispatcher: tuple[Dispatcher, Bot, Clock, list[str]],
) -> None:
    dp, bot, _, seen = dispatcher
    await dp.feed_update(bot, update(bot, 2, text="/form"))  # message 4, the prompt 5
    # Sent before the prompt (it waited in the chat's queue): a question, and the form waits on.
    await dp.feed_update(bot, update(bot, 3, message_id=3, text="what is 2+2?"))
    await dp.feed_update(bot, update(bot, 4, message_id=2, text="/other"))
    assert seen == ["question: what is 2+2?", "question: /other"]
    assert await form_state(dp) == Form.waiting.state
    await dp.feed_update(bot, update(bot, 5, text="me@example.ru"))
    assert seen[2:] == ["form: me@example.ru"]


# --- the role prompt past its time, in a dispatcher of this process ---------------------------------------------


async def test_the_buttons_of_a_role_prompt_left_for_an_hour_change_nothing(tmp_path: Path) -> None:
    chat = 5006
    async with FakeTelegram(token=TOKEN) as tg:
        settings = make_settings(
            database_url=f"sqlite:///{tmp_path / 'bot.sqlite3'}", bot_token=TOKEN, telegram_api_url=tg.base_url
        )
        async with build_services(settings, migrate=True) as services:
            bot = create_bot(settings)
            dispatcher = create_dispatcher(services)
            try:
                offset = 0

                async def handle_updates() -> None:
                    nonlocal offset
                    for event in await bot.get_updates(offset=offset, timeout=0):
                        offset = event.update_id + 1
                        await dispatcher.feed_update(bot, event)

                tg.user_message(chat, "/role Старая роль")
                tg.user_message(chat, "/role")
                await handle_updates()
                prompt = tg.sent_messages(chat)[-1]
                assert prompt.button_texts == [texts.ROLE_CANCEL, texts.ROLE_DELETE]
                state = dispatcher.fsm.get_context(bot, chat_id=chat, user_id=chat)
                await state.update_data({_OPENED: (await state.get_data())[_OPENED] - FORM_TTL_S - 1})

                shown = prompt.text
                for data in prompt.callback_data:
                    query = tg.press_button(chat, prompt.message_id, data)
                    await handle_updates()
                    assert (tg.callback_answer(query) or {}).get("text") == texts.ROLE_PROMPT_OUTDATED
                assert prompt.text == shown  # the fake's messages are live
                assert (await services.users.get(chat)).role == "Старая роль"
                assert await state.get_state() is None
            finally:
                await bot.session.close()
