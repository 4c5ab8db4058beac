"""Commands and buttons, end to end: the real bot process against FakeTelegram and FakeLLM (SQLite)."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pomogator.billing.texts import when
from pomogator.bot import texts
from pomogator.bot.callbacks import ModelAction, ModelCallback
from pomogator.llm.catalog import load_catalog
from tests.bot.harness import BotHarness
from tests.fakes.openai_server import Reply
from tests.fakes.telegram_server import SentMessage
from tests.services.test_files import JPEG

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CATALOG = load_catalog()
DEFAULT = CATALOG.default
LOCKED = next(m for m in CATALOG.models if m.premium_only)
OTHER_FREE = next(m for m in CATALOG.models if not m.premium_only and m.id != DEFAULT.id)
SUPPORT = "@example_support"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    """The shared bot of this module, with a support contact (by default there is none)."""
    async with BotHarness.open(tmp_path_factory.mktemp("commands"), env={"POMOGATOR_SUPPORT_CONTACT": SUPPORT}) as h:
        yield h


def answers_of(h: BotHarness, query_id: str) -> int:
    return sum(1 for call in h.tg.calls_of("answerCallbackQuery") if call.params.get("callback_query_id") == query_id)


async def press(h: BotHarness, chat: int, message: SentMessage, text_part: str) -> dict[str, object]:
    """Press a button, wait for everything it causes, and check the press was answered exactly once."""
    data = str(message.button(text_part)["callback_data"])
    query_id = h.tg.press_button(chat, message.message_id, data)
    answer = await h.wait_callback_answer(query_id)
    await h.settle(quiet=0.3)
    assert answers_of(h, query_id) == 1
    return answer


async def test_bot_profile_is_set_at_start_within_telegram_limits(harness: BotHarness) -> None:
    h = harness
    await h.tg.wait_until(lambda: bool(h.tg.short_descriptions), what="profile set")
    # The menu is for private chats: in a group the bot only points to its private chat.
    (scope, language), commands = next(iter(h.tg.commands.items()))
    assert len(h.tg.commands) == 1 and json.loads(scope) == {"type": "all_private_chats"} and language == ""
    assert [c["command"] for c in commands] == [name for name, _ in texts.COMMANDS]
    assert "stop" in [c["command"] for c in commands]
    description = h.tg.descriptions[""]
    short = h.tg.short_descriptions[""]
    assert len(description) <= 512 and SUPPORT in description
    assert len(short) <= 120 and SUPPORT in short


async def test_start_creates_the_user_and_shows_the_menu(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    reply = await h.reply_settled(chat, "/start")
    assert "Помогатор" in (reply.text or "")
    assert DEFAULT.title in (reply.text or "")
    assert reply.button_texts == [
        texts.MENU_MODEL,
        texts.MENU_ROLE,
        texts.MENU_PROFILE,
        texts.MENU_BILLING,
        texts.MENU_HELP,
        texts.MENU_DELETE_CONTEXT,
    ]
    async with h.services() as services:
        assert await services.users.exists(chat)


async def test_every_start_button_does_what_its_command_does(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/start")
    for button, command in (
        (texts.MENU_HELP, "/help"),
        (texts.MENU_MODEL, "/model"),
        (texts.MENU_PROFILE, "/profile"),
        (texts.MENU_BILLING, "/billing"),
        (texts.MENU_DELETE_CONTEXT, "/delete_context"),
        (texts.MENU_ROLE, "/role"),
    ):
        # As the command showed it: the button's /role prompt replaces the command's, which loses its buttons.
        by_command = copy.deepcopy(await h.reply_settled(chat, command))
        last = h.tg.sent_messages(chat)[-1].message_id
        await press(h, chat, menu, button)
        by_button = h.messages_after(chat, last)
        assert len(by_button) == 1, button
        assert by_button[0].html == by_command.html, button
        assert by_button[0].reply_markup == by_command.reply_markup, button
    # The role button also waits for the role, like /role does.
    reply = await h.reply_settled(chat, "Ты — вежливый помощник")
    assert reply.text == texts.ROLE_SAVED


async def test_help_explains_every_command_and_the_support_contact(harness: BotHarness) -> None:
    h = harness
    reply = await h.reply_settled(h.new_chat(), "/help")
    for command, _ in texts.COMMANDS:
        assert f"/{command}" in (reply.text or "")
    assert SUPPORT in (reply.text or "")
    # The zone as every other message shows it, not the setting's name.
    zone = h.settings().tz
    assert f"в полночь ({texts.zone_label(zone)})" in (reply.text or "")
    assert zone.key not in (reply.text or "")


async def test_commands_are_known_whatever_their_case(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    start = await h.reply_settled(chat, "/Start")
    assert start.button_texts[0] == texts.MENU_MODEL
    help_reply = await h.reply_settled(chat, "/HELP")
    assert "/delete_me" in (help_reply.text or "")
    await h.reply_settled(chat, "/Role")
    assert (await h.reply_settled(chat, "/Cancel")).text == texts.ROLE_UNCHANGED


async def test_model_menu_lists_limits_and_marks_current_and_locked(harness: BotHarness) -> None:
    h = harness
    menu = await h.reply_settled(h.new_chat(), "/model")
    text = menu.text or ""
    for model in CATALOG.models:
        assert model.title in text
        free = "только премиум" if model.premium_only else str(model.free_daily)
        marks = f"{' 🖼' if model.vision else ''}{' 🔒' if model.premium_only else ''}"
        assert f"{model.title}{marks} — {free} / {model.premium_daily}" in text
    assert text.endswith("🖼 — видит изображения\n🔒 — только с премиумом")
    buttons = menu.button_texts
    assert buttons[CATALOG.models.index(DEFAULT)] == f"✅ {DEFAULT.title}"
    for model in CATALOG.models:
        if model.premium_only:
            assert buttons[CATALOG.models.index(model)] == f"🔒 {model.title}"
    assert buttons[-1] == texts.MODEL_EXIT
    # Buttons carry catalog indexes, never OpenRouter ids (which contain ':').
    for data in menu.callback_data:
        assert len(data.encode()) <= 64
        assert ModelCallback.unpack(data).action in (ModelAction.pick, ModelAction.exit)


async def test_choosing_a_free_model_marks_it_and_is_stored(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/model")
    answer = await press(h, chat, menu, OTHER_FREE.title)
    assert OTHER_FREE.title in str(answer.get("text"))
    edited = h.tg.message(chat, menu.message_id)
    assert edited.button_texts[CATALOG.models.index(OTHER_FREE)] == f"✅ {OTHER_FREE.title}"
    assert edited.button_texts[CATALOG.models.index(DEFAULT)] == DEFAULT.title
    async with h.services() as services:
        assert (await services.users.get(chat)).model.id == OTHER_FREE.id
    reply = await h.reply_settled(chat, "hello")
    assert reply.text == "Echo: hello"
    assert h.llm.requests[-1].model == OTHER_FREE.id


async def test_too_many_button_presses_get_one_notice_and_the_rest_are_not_handled(harness: BotHarness) -> None:
    """A client that sends presses itself is held to a limit (twice the messages' 20 a minute), like messages."""
    h = harness
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/model")
    data = str(menu.button(OTHER_FREE.title)["callback_data"])
    queries = [h.tg.press_button(chat, menu.message_id, data, strict=False) for _ in range(45)]
    await h.tg.wait_until(lambda: sum(h.tg.callback_answer(q) is not None for q in queries) >= 41, 30, "answers")
    await h.settle(quiet=0.5)
    answers = [h.tg.callback_answer(q) for q in queries]
    assert sum(a is not None for a in answers) == 41
    notices = [a for a in answers if a is not None and a.get("text") == texts.PRESSES_FLOOD]
    assert len(notices) == 1
    # The presses refused were not handled: 40 answers name the model chosen, no more.
    assert sum(OTHER_FREE.title in str(a.get("text")) for a in answers if a is not None) == 40


async def test_a_locked_model_is_refused_for_a_free_user(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/model")
    last = h.tg.sent_messages(chat)[-1].message_id
    answer = await press(h, chat, menu, LOCKED.title)
    # The refusal is an alert over the menu, not another message.
    assert h.messages_after(chat, last) == []
    assert answer.get("show_alert") is True
    # This bot takes no payments (no YooKassa shop): premium is said to be coming, not offered.
    assert answer.get("text") == f"🔒 {LOCKED.title} — только с премиумом. Премиум скоро появится."
    assert h.tg.message(chat, menu.message_id).button_texts[CATALOG.models.index(DEFAULT)] == f"✅ {DEFAULT.title}"
    async with h.services() as services:
        assert (await services.users.get(chat)).model.id == DEFAULT.id


async def test_a_premium_model_picked_in_a_menu_older_than_the_end_of_premium_redraws_the_menu(
    harness: BotHarness,
) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/start")
    async with h.services() as services:
        await services.subscriptions.grant(chat, 30)
        await services.users.set_model(chat, LOCKED.id)
    menu = await h.reply_settled(chat, "/model")
    assert f"Сейчас: {LOCKED.title}" in (menu.text or "")
    async with h.services() as services:
        await services.subscriptions.revoke(chat)
    last = h.tg.sent_messages(chat)[-1].message_id
    answer = await press(h, chat, menu, LOCKED.title)
    # The reset is told as on any update; the refusal is an alert; the menu shows the model as it is now.
    [notice] = h.messages_after(chat, last)
    assert (notice.text or "").startswith("ℹ️ Премиум закончился")
    assert answer.get("show_alert") is True and LOCKED.title in str(answer.get("text"))
    redrawn = h.tg.message(chat, menu.message_id)
    assert f"Сейчас: {DEFAULT.title}" in (redrawn.text or "")
    assert redrawn.button_texts[CATALOG.models.index(DEFAULT)] == f"✅ {DEFAULT.title}"
    assert redrawn.button_texts[CATALOG.models.index(LOCKED)] == f"🔒 {LOCKED.title}"


async def test_a_premium_user_can_choose_a_premium_model(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/start")
    async with h.services() as services:
        await services.subscriptions.grant(chat, 30)
    menu = await h.reply_settled(chat, "/model")
    assert not any(text.startswith("🔒") for text in menu.button_texts)
    assert "🔒" not in (menu.text or "")  # what they paid for is not shown locked
    await press(h, chat, menu, LOCKED.title)
    assert h.tg.message(chat, menu.message_id).button_texts[CATALOG.models.index(LOCKED)] == f"✅ {LOCKED.title}"
    reply = await h.reply_settled(chat, "/profile")
    assert "активен до" in (reply.text or "")
    assert LOCKED.title in (reply.text or "")


async def test_the_model_falls_back_once_when_premium_ends(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/start")
    texts_after = await h.ask_after_premium_ended(chat, LOCKED.id, "still there?")
    assert texts_after[0].startswith("ℹ️ Премиум закончился") and DEFAULT.title in texts_after[0]
    assert texts_after[1] == "Echo: still there?"
    assert h.llm.requests[-1].model == DEFAULT.id
    reply = await h.reply_settled(chat, "again")
    assert reply.text == "Echo: again"


async def test_reading_the_account_leaves_the_reset_and_its_notice_to_the_next_message(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/start")
    async with h.services() as services:
        await services.subscriptions.grant(chat, 30)
        await services.users.set_model(chat, LOCKED.id)
        await services.subscriptions.revoke(chat)
        # What an admin's `user show` and `user list` and a refund's receipt read.
        assert (await services.users.profile(chat)).account.model.id == DEFAULT.id
        assert chat in [a.telegram_id for a in await services.users.list()]
        await services.users.ensure(chat)
    after = h.tg.sent_messages(chat)[-1].message_id
    h.tg.user_message(chat, "still there?")
    await h.tg.wait_until(lambda: len(h.messages_after(chat, after)) >= 2, what="notice and answer")
    await h.settle()
    notice, answer = h.tg.sent_texts(chat)[-2:]
    assert notice.startswith("ℹ️ Премиум закончился") and DEFAULT.title in notice
    assert answer == "Echo: still there?"


async def test_exit_button_deletes_the_menu(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/model")
    await press(h, chat, menu, texts.MODEL_EXIT)
    assert h.tg.message(chat, menu.message_id).deleted


async def test_role_is_set_by_the_next_message_and_sent_as_system_prompt(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    prompt = await h.reply_settled(chat, "/role")
    assert "не задана" in (prompt.text or "")
    assert prompt.button_texts == [texts.ROLE_CANCEL]  # no role to delete
    role = "Ты — <пират> & говоришь «арр»"
    saved = await h.reply_settled(chat, role)
    assert saved.text == texts.ROLE_SAVED
    assert h.tg.message(chat, prompt.message_id).buttons == []  # the form is over: nothing left to press
    reply = await h.reply_settled(chat, "кто ты?")
    assert reply.text == "Echo: кто ты?"
    assert h.llm.requests[-1].system_prompt == role
    # Shown escaped, exactly as written.
    prompt = await h.reply_settled(chat, "/role")
    assert role in (prompt.text or "")
    profile = await h.reply_settled(chat, "/profile")
    assert role in (profile.text or "")


async def test_role_cancel_keeps_the_role_and_delete_removes_it(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/role")
    await h.reply_settled(chat, "Будь краток")
    prompt = await h.reply_settled(chat, "/role")
    await press(h, chat, prompt, texts.ROLE_CANCEL)
    assert h.tg.message(chat, prompt.message_id).text == texts.ROLE_UNCHANGED
    # The state is gone: the next text is a question, not a role.
    reply = await h.reply_settled(chat, "вопрос")
    assert reply.text == "Echo: вопрос"
    assert h.llm.requests[-1].system_prompt == "Будь краток"

    prompt = await h.reply_settled(chat, "/role")
    await press(h, chat, prompt, texts.ROLE_DELETE)
    assert h.tg.message(chat, prompt.message_id).text == texts.ROLE_DELETED
    await h.reply_settled(chat, "ещё вопрос")
    assert h.llm.requests[-1].system_prompt is None


async def test_a_too_long_role_is_refused_and_the_old_one_kept(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/role")
    await h.reply_settled(chat, "Старая роль")
    prompt = await h.reply_settled(chat, "/role")
    refusal = await h.reply_settled(chat, "я" * 2001)
    assert "2001" in (refusal.text or "") and "2000" in (refusal.text or "")
    async with h.services() as services:
        assert (await services.users.get(chat)).role == "Старая роль"
    assert prompt.button_texts == [texts.ROLE_CANCEL, texts.ROLE_DELETE]
    # Still waiting for a role: a shorter one is accepted.
    saved = await h.reply_settled(chat, "я" * 2000)
    assert saved.text == texts.ROLE_SAVED


async def test_a_role_given_with_the_command_is_saved_at_once(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    assert (await h.reply_settled(chat, "/role Ты — опытный юрист,\nотвечай кратко")).text == texts.ROLE_SAVED
    # No prompt waits: the next message is a question, asked with the new role.
    assert (await h.reply_settled(chat, "Сколько будет 2+2?")).text == "Echo: Сколько будет 2+2?"
    assert h.llm.requests[-1].system_prompt == "Ты — опытный юрист,\nотвечай кратко"
    # Too long: refused, and the prompt opens for a shorter one (or Cancel), as the refusal says.
    last = h.tg.sent_messages(chat)[-1].message_id
    h.tg.user_message(chat, "/role " + "я" * 2001)
    await h.tg.wait_until(lambda: len(h.messages_after(chat, last)) >= 2, what="the prompt and the refusal")
    await h.settle(quiet=0.3)
    prompt, refusal = h.messages_after(chat, last)
    assert prompt.button_texts == [texts.ROLE_CANCEL, texts.ROLE_DELETE]
    assert "2001" in (refusal.text or "")
    assert (await h.reply_settled(chat, "Будь краток")).text == texts.ROLE_SAVED
    async with h.services() as services:
        assert (await services.users.get(chat)).role == "Будь краток"


async def stale_press(h: BotHarness, chat: int, prompt: SentMessage, text_part: str) -> dict[str, object]:
    """Press a button of ``prompt`` as it was sent, whether or not the prompt still shows it."""
    query_id = h.tg.press_button(chat, prompt.message_id, str(prompt.button(text_part)["callback_data"]), strict=False)
    answer = await h.wait_callback_answer(query_id)
    await h.settle(quiet=0.3)
    return answer


async def test_a_role_prompt_that_no_longer_waits_changes_nothing(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "/role Старая роль")
    # Answered by text: the prompt loses its buttons, and a press left in flight changes nothing.
    prompt = copy.deepcopy(await h.reply_settled(chat, "/role"))
    await h.reply_settled(chat, "Ты пират")
    assert h.tg.message(chat, prompt.message_id).buttons == []
    for button in (texts.ROLE_CANCEL, texts.ROLE_DELETE):
        assert (await stale_press(h, chat, prompt, button)).get("text") == texts.ROLE_PROMPT_OUTDATED
    assert h.tg.message(chat, prompt.message_id).text == prompt.text
    async with h.services() as services:
        assert (await services.users.get(chat)).role == "Ты пират"

    # Cancelled by /cancel or a typed "Отмена": the same.
    for cancel in ("/cancel", "Отмена"):
        prompt = await h.reply_settled(chat, "/role")
        assert (await h.reply_settled(chat, cancel)).text == texts.ROLE_UNCHANGED
        assert h.tg.message(chat, prompt.message_id).buttons == []

    # Ended by another command (it says so), or replaced by a newer prompt: it loses its buttons, and a press on a
    # client that still shows them changes nothing.
    ended = copy.deepcopy(await h.reply_settled(chat, "/role"))
    await h.reply_settled(chat, "/model")
    assert h.tg.message(chat, ended.message_id).text == texts.ROLE_INPUT_CLOSED
    replaced = copy.deepcopy(await h.reply_settled(chat, "/role"))
    newest = await h.reply_settled(chat, "/role")
    assert h.tg.message(chat, replaced.message_id).text == replaced.text  # replaced, not cancelled
    for prompt in (ended, replaced):
        assert h.tg.message(chat, prompt.message_id).buttons == []
        assert (await stale_press(h, chat, prompt, texts.ROLE_DELETE)).get("text") == texts.ROLE_PROMPT_OUTDATED
    assert newest.buttons
    async with h.services() as services:
        assert (await services.users.get(chat)).role == "Ты пират"
    # The newest prompt still waits.
    assert (await h.reply_settled(chat, "Будь краток")).text == texts.ROLE_SAVED


async def test_stop_stops_the_answer_at_once_and_says_when_nothing_is_written(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    assert (await h.reply_settled(chat, "/stop")).text == texts.NOTHING_TO_STOP
    h.llm.enqueue(Reply.slow(400, 40.0))
    h.tg.user_message(chat, "long story")
    await h.tg.wait_until(lambda: (h.tg.drafts(chat).latest_text or "").count("tok") >= 3, 15, "a draft")
    # Not queued behind the answer it stops: the answer ends long before its 40 seconds.
    h.tg.user_message(chat, "/Stop")
    answer = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    assert (answer.text or "").startswith("tok0 tok1") and (answer.text or "").endswith("Ответ остановлен")
    assert h.messages_after(chat, answer.message_id) == []  # the stop mark is the only reply
    # A pending form keeps waiting: /stop is not turning away from it.
    await h.reply_settled(chat, "/role")
    assert (await h.reply_settled(chat, "/stop")).text == texts.NOTHING_TO_STOP
    assert (await h.reply_settled(chat, "Будь краток")).text == texts.ROLE_SAVED


async def test_stop_before_the_answer_starts_stops_it_without_asking_the_model(harness: BotHarness) -> None:
    """A text long enough to be the first piece of a split one waits a moment for the rest: /stop then is not
    "nothing is written" followed by the whole answer."""
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    h.tg.user_message(chat, "Перескажи: " + "очень длинный текст " * 200)
    # As soon as the bot has the text, so well within its wait for the text's other pieces.
    await h.tg.wait_until(lambda: not h.tg.undelivered_updates, 15, "the text delivered")
    h.tg.user_message(chat, "/stop")
    stopped = await h.tg.wait_for_message(chat, timeout=15)
    await h.settle()
    assert h.tg.sent_texts(chat) == [texts.STOPPED_EMPTY] and stopped.text == texts.STOPPED_EMPTY
    assert h.llm.request_count == before
    async with h.services() as services:
        assert await services.quota.used_today(chat) == {}  # nothing was even reserved
    # The chat's next message is answered as usual.
    assert (await h.reply_settled(chat, "ещё вопрос")).text == "Echo: ещё вопрос"


async def test_stop_while_a_file_downloads_ends_it_before_the_model_is_asked(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    before = h.llm.request_count
    downloads = len(h.tg.calls_of("getFile"))
    h.tg.hold("getFile")  # a big file: Telegram takes its time to hand it out
    try:
        h.tg.user_document(chat, b"quarterly report", "report.txt", "text/plain", caption="Кратко?")
        await h.tg.wait_until(lambda: len(h.tg.calls_of("getFile")) > downloads, 10, "the download")
        # Not "nothing is written" while "typing…" shows: the download ends, the answer never starts.
        h.tg.user_message(chat, "/stop")
        stopped = await h.tg.wait_for_message(chat, timeout=10)
    finally:
        h.tg.release("getFile")
    await h.settle()
    assert h.tg.sent_texts(chat) == [texts.STOPPED_EMPTY] and stopped.text == texts.STOPPED_EMPTY
    assert h.llm.request_count == before
    async with h.services() as services:
        assert await services.quota.used_today(chat) == {}


async def test_stop_while_a_written_answer_is_sent_says_nothing_is_being_written(harness: BotHarness) -> None:
    """Once the answer is written, its turn is no longer something to stop: /stop while the final message goes out
    (held by Telegram here) is told so, not left without a reply."""
    h = harness
    chat = h.new_chat()
    before = len(h.tg.calls_of("sendMessage"))
    h.tg.hold("sendMessage")
    try:
        h.tg.user_message(chat, "hi")
        await h.tg.wait_until(lambda: len(h.tg.calls_of("sendMessage")) == before + 1, 15, "the final message")
        h.tg.user_message(chat, "/stop")
        await h.tg.wait_until(lambda: len(h.tg.calls_of("sendMessage")) == before + 2, 15, "the reply to /stop")
    finally:
        h.tg.release("sendMessage")
    await h.settle()
    assert sorted(h.tg.sent_texts(chat)) == sorted(["Echo: hi", texts.NOTHING_TO_STOP])


async def test_cancel_with_nothing_to_cancel_says_so(harness: BotHarness) -> None:
    h = harness
    assert (await h.reply_settled(h.new_chat(), "/cancel")).text == texts.NOTHING_TO_CANCEL


async def test_profile_shows_model_role_usage_and_premium(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "one")
    await h.reply_settled(chat, "two")
    profile = await h.reply_settled(chat, "/profile")
    text = profile.text or ""
    assert DEFAULT.title in text
    assert "Роль: не задана" in text
    assert "Запросов сегодня: 2" in text
    assert f"Осталось для текущей модели: {DEFAULT.free_daily - 2} из {DEFAULT.free_daily}" in text
    # This bot takes no payments: nothing points to /billing, where premium cannot be bought.
    assert text.endswith("Премиум: нет") and "/billing" not in text


async def test_delete_context_forgets_the_conversation(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "first")
    await h.reply_settled(chat, "second")
    assert [m["role"] for m in h.llm.requests[-1].messages] == ["user", "assistant", "user"]
    reply = await h.reply_settled(chat, "/delete_context")
    assert reply.text == texts.CONTEXT_CLEARED
    await h.reply_settled(chat, "third")
    assert [m["content"] for m in h.llm.requests[-1].messages] == ["third"]


async def test_delete_me_asks_first_and_erases_on_confirmation(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    await h.reply_settled(chat, "remember me")
    prompt = await h.reply_settled(chat, "/delete_me")
    assert prompt.button_texts == [texts.DELETE_ME_CONFIRM, texts.DELETE_ME_CANCEL]
    await press(h, chat, prompt, texts.DELETE_ME_CANCEL)
    assert h.tg.message(chat, prompt.message_id).text == texts.DELETE_ME_CANCELLED
    async with h.services() as services:
        assert await services.users.exists(chat)

    prompt = await h.reply_settled(chat, "/delete_me")
    await press(h, chat, prompt, texts.DELETE_ME_CONFIRM)
    assert h.tg.message(chat, prompt.message_id).text == texts.DELETE_ME_DONE
    async with h.services() as services:
        assert not await services.users.exists(chat)
        # Today's count stays until midnight: erasing does not give the day's requests back.
        assert sum((await services.quota.used_today(chat)).values()) == 1
    await h.reply_settled(chat, "hello again")
    assert [m["content"] for m in h.llm.requests[-1].messages] == ["hello again"]
    async with h.services() as services:
        assert sum((await services.quota.used_today(chat)).values()) == 2


async def test_billing_says_premium_is_coming(harness: BotHarness) -> None:
    h = harness
    reply = await h.reply_settled(h.new_chat(), "/billing")
    assert "скоро" in (reply.text or "")
    assert SUPPORT in (reply.text or "")
    assert not reply.buttons


async def test_billing_tells_a_premium_user_until_when_and_how_to_extend_it(harness: BotHarness) -> None:
    # Without payments premium is given by the admins: /billing agrees with /profile and the reminders.
    h = harness
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/start")
    async with h.services() as services:
        until = await services.subscriptions.grant(chat, 30)
        tz = services.settings.tz
    profile = (await h.reply_settled(chat, "/profile")).text or ""
    assert f"активен до {when(until, tz)}" in profile
    billing = (await h.reply_settled(chat, "/billing")).text or ""
    assert billing.startswith(f"💎 Премиум активен до {when(until, tz)}")
    assert f"Продлить его можно через поддержку: {SUPPORT}" in billing
    assert "скоро" not in billing and "бесплатными" not in billing
    await press(h, chat, menu, texts.MENU_BILLING)
    assert h.tg.sent_texts(chat)[-1] == billing


async def test_a_photo_refusal_shows_a_premium_user_no_locks(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    blind = next(m for m in CATALOG.models if not m.vision)
    async with h.services() as services:
        await services.users.ensure(chat)
        await services.subscriptions.grant(chat, 30)
        await services.users.set_model(chat, blind.id)
    h.tg.user_photo(chat, JPEG, caption="Что тут?")
    text = (await h.tg.wait_for_message(chat, timeout=15)).text or ""
    await h.settle(quiet=0.3)
    assert text.startswith(f"Модель {blind.title} не видит изображения")
    assert all(model.title in text for model in CATALOG.vision_models())
    assert "🔒" not in text


async def test_in_a_group_the_bot_says_once_that_it_works_in_private(harness: BotHarness) -> None:
    h = harness
    group = -1_000_000_000_000 - h.new_chat()
    requests = h.llm.request_count
    h.tg.group_message(group, "hello bot", user_id=h.new_chat())
    await h.tg.wait_for_message(group, after_message_id=0)
    await h.settle()
    h.tg.group_message(group, "/start", user_id=h.new_chat())
    h.tg.group_message(group, "anyone?", user_id=h.new_chat())
    await h.settle()
    sent = h.tg.sent_messages(group)
    assert len(sent) == 1
    assert "личных сообщениях" in (sent[0].text or "")
    assert h.llm.request_count == requests


async def test_unknown_commands_and_other_messages_get_a_hint(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    requests = h.llm.request_count
    reply = await h.reply_settled(chat, "/nonsense")
    assert reply.text == texts.UNKNOWN_COMMAND
    h.tg.user_sticker(chat)
    reply = await h.tg.wait_for_message(chat)
    assert reply.text == texts.NOT_TEXT
    assert h.llm.request_count == requests


async def test_a_text_that_merely_starts_with_a_slash_is_a_question(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    requests = h.llm.request_count
    for question in ("/etc/hosts — что это за файл в Linux?", "/r/python — что там обсуждают?"):
        reply = await h.reply_settled(chat, question)
        assert reply.text == f"Echo: {question}"
    assert h.llm.request_count == requests + 2
    # What Telegram marks as a command stays one, known or not.
    assert (await h.reply_settled(chat, "/etc — что это за папка?")).text == texts.UNKNOWN_COMMAND
    assert h.llm.request_count == requests + 2


async def test_a_stale_button_is_still_answered(harness: BotHarness) -> None:
    h = harness
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/model")
    await press(h, chat, menu, texts.MODEL_EXIT)
    query_id = h.tg.press_button(chat, menu.message_id, menu.callback_data[0], strict=False)
    await h.wait_callback_answer(query_id)
    await h.settle(quiet=0.3)
    assert answers_of(h, query_id) == 1
