"""/billing in the running bot: the receipt e-mail form (cancel words, its Cancel button in place, an address
YooKassa refuses), a plan pressed after paying or while YooKassa cannot say whether it was paid, and two plans'
invoices at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.base import StorageKey

from pomogator.billing import texts
from pomogator.bot import texts as bot_texts
from pomogator.bot.callbacks import BillingAction, BillingCallback
from pomogator.bot.factory import create_bot, create_dispatcher
from pomogator.bot.handlers.billing import ask_for_email, show_billing
from pomogator.bot.middlewares.forms import _OPENED, FORM_TTL_S
from pomogator.container import Services, build_services
from pomogator.llm.catalog import load_catalog
from pomogator.services.billing import BillingService
from tests.bot.harness import BotHarness
from tests.fakes.telegram_server import FakeTelegram, SentMessage
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import add_user, billing_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

CANCEL = BillingCallback(action=BillingAction.cancel_email).pack()
REFUSED = "bad@example.ru"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[BotHarness, FakeYooKassa]]:
    """One running bot that sells premium with receipts, so a plan asks for an e-mail first."""
    async with FakeYooKassa(require_receipt=True) as kassa:
        kassa.refused_emails.add(REFUSED)
        env = kassa.client_env() | {"POMOGATOR_RECEIPT_ENABLED": "1"}
        async with BotHarness.open(tmp_path_factory.mktemp("billing_forms"), env=env) as h:
            yield h, kassa


async def email_prompt(h: BotHarness, chat: int, plan: str = "Месяц") -> SentMessage:
    screen = await h.reply_settled(chat, "/billing")
    await h.press_settled(chat, screen, plan, until=lambda m: m.text == texts.EMAIL_PROMPT)
    prompt = h.tg.sent_messages(chat)[-1]
    assert prompt.text == texts.EMAIL_PROMPT and prompt.buttons
    return prompt


def invoice(plan: str) -> Callable[[SentMessage], bool]:
    """The message with the invoice: it comes after YooKassa answered, which no Bot API call shows."""
    return lambda m: (m.text or "").startswith(f"Счёт создан: премиум на {plan}")


def current(h: BotHarness, message: SentMessage) -> SentMessage:
    return h.tg.message(message.chat_id, message.message_id)


@pytest.mark.slow
async def test_a_typed_cancel_word_and_the_cancel_button_end_the_email_form(
    running: tuple[BotHarness, FakeYooKassa],
) -> None:
    h, _ = running
    chat = h.new_chat()
    prompt = await email_prompt(h, chat)
    assert (await h.reply_settled(chat, "Отмена")).text == texts.PURCHASE_CANCELED
    assert current(h, prompt).buttons == []  # no Cancel left to press on a form that is over

    # The button answers in place and goes: pressed once, nothing is left to contradict it.
    prompt = await email_prompt(h, chat)
    await h.press_settled(chat, prompt, "Отмена")
    assert current(h, prompt).text == texts.PURCHASE_CANCELED and current(h, prompt).buttons == []
    assert h.messages_after(chat, prompt.message_id) == []
    async with h.services() as services:
        assert (await services.users.get(chat)).email is None


@pytest.mark.slow
async def test_an_earlier_prompts_cancel_leaves_the_newer_form_and_a_saved_email_clears_the_button(
    running: tuple[BotHarness, FakeYooKassa],
) -> None:
    h, _ = running
    chat = h.new_chat()
    earlier = await email_prompt(h, chat)
    newer = await email_prompt(h, chat, "Год")
    # Another plan chosen ended the earlier prompt's form: it says so, and its Cancel is gone.
    assert current(h, earlier).text == texts.PURCHASE_INPUT_CLOSED and current(h, earlier).buttons == []
    # Pressed on a client still showing it, that Cancel leaves the newer form waiting.
    query = h.tg.press_button(chat, earlier.message_id, CANCEL, strict=False)
    await h.wait_callback_answer(query)
    await h.settle(quiet=0.3)
    assert current(h, newer).buttons
    await h.reply_settled(chat, "ann@example.ru.", until=invoice("год"))
    texts_after = [m.text or "" for m in h.messages_after(chat, newer.message_id)]
    assert texts_after[0] == texts.email_saved("ann@example.ru", paying=True)
    assert texts_after[-1].startswith("Счёт создан: премиум на год")
    assert current(h, newer).buttons == []


@pytest.mark.slow
async def test_an_address_yookassa_refuses_is_asked_for_again(running: tuple[BotHarness, FakeYooKassa]) -> None:
    h, _ = running
    chat = h.new_chat()
    prompt = await email_prompt(h, chat)
    await h.reply_settled(chat, REFUSED, until=lambda m: m.text == texts.email_refused(REFUSED))
    asked = h.tg.sent_messages(chat)[-1]
    assert asked.text == texts.email_refused(REFUSED) and asked.buttons
    assert texts.PAYMENT_REJECTED not in h.tg.sent_texts(chat)
    assert current(h, prompt).buttons == []
    await h.reply_settled(chat, "good@example.ru", until=invoice("месяц"))
    assert h.tg.sent_texts(chat)[-1].startswith("Счёт создан: премиум на месяц")
    assert current(h, asked).buttons == []


@pytest.mark.slow
async def test_a_plan_pressed_after_paying_and_another_plans_invoice(running: tuple[BotHarness, FakeYooKassa]) -> None:
    h, kassa = running
    chat = h.new_chat()
    screen = await h.reply_settled(chat, "/billing")
    async with h.services() as services:
        await services.users.set_email(chat, "ann@example.ru")
    await h.press_settled(chat, screen, "Месяц", until=invoice("месяц"))
    assert h.tg.sent_texts(chat)[-1].startswith("Счёт создан: премиум на месяц")
    await h.press_settled(chat, screen, "Год", until=invoice("год"))
    year = h.tg.sent_texts(chat)[-1]
    assert year.startswith("Счёт создан: премиум на год") and "счёт на месяц тоже действует" in year

    [month_id] = [p["id"] for p in kassa.payments.values() if p["metadata"].get("telegram_id") == str(chat)][:1]
    kassa.succeed(month_id)  # paid; its notification has not come
    made = len(kassa.payments)
    await h.press_settled(chat, screen, "Месяц")
    await h.tg.wait_until(lambda: any("Этот счёт уже оплачен" in t for t in h.tg.sent_texts(chat)), what="reply")
    assert any("Оплата 599 ₽ получена" in t for t in h.tg.sent_texts(chat))
    assert len(kassa.payments) == made


# --- in a dispatcher of this process ------------------------------------------------------------------------


@dataclass
class InProcess:
    """A dispatcher of this process over the fake Bot API and YooKassa, with billing on."""

    tg: FakeTelegram
    kassa: FakeYooKassa
    services: Services
    bot: Bot
    dispatcher: Dispatcher
    offset: int = 0

    async def press(self, chat: int, message_id: int, data: str) -> None:
        """Press a button, handle the update, and check the press was answered."""
        query = self.tg.press_button(chat, message_id, data)
        for update in await self.bot.get_updates(offset=self.offset, timeout=0):
            self.offset = update.update_id + 1
            await self.dispatcher.feed_update(self.bot, update)
        assert self.tg.callback_answer(query) is not None


@asynccontextmanager
async def in_process(tmp_path: Path, *, receipt_enabled: bool = False) -> AsyncIterator[InProcess]:
    async with FakeTelegram() as tg, FakeYooKassa() as kassa:
        settings = billing_settings(f"sqlite:///{tmp_path / 'bot.sqlite3'}", kassa, tg, receipt_enabled=receipt_enabled)
        async with build_services(settings, migrate=True) as services:
            bot = create_bot(settings)
            try:
                yield InProcess(tg, kassa, services, bot, create_dispatcher(services))
            finally:
                await bot.session.close()


BUY_MONTH = BillingCallback(action=BillingAction.buy, plan="month").pack()


@pytest.mark.parametrize("trouble", ["yookassa-down", "not-matching"])
async def test_a_plan_pressed_again_while_the_earlier_invoice_may_be_paid_offers_no_second_one(
    tmp_path: Path, trouble: str
) -> None:
    """YooKassa cannot say whether the earlier link was paid, or says it was paid in a way that does not match our
    record of it: the person is not told that no money was taken, nor handed a link they would pay a second time."""
    chat = 5006
    async with in_process(tmp_path) as p:
        await add_user(p.services, p.tg, chat)
        checkout = await p.services.billing.start_payment(chat, "month")
        p.kassa.succeed(checkout.payment_id)  # paid; the notification has not come
        await show_billing(p.bot, chat, await p.services.users.get(chat), p.services)
        screen = p.tg.sent_messages(chat)[-1]
        if trouble == "yookassa-down":
            p.kassa.down = True
            expected = texts.PAYMENT_STATUS_UNKNOWN
        else:
            p.kassa.payments[checkout.payment_id]["metadata"] = {"telegram_id": "1", "plan": "month"}
            expected = bot_texts.payment_under_review(p.services.settings.support_contact)
        await p.press(chat, screen.message_id, BUY_MONTH)
        said = p.tg.sent_texts(chat)[-1]
        assert said == expected and "не списаны" not in said and "не нужно" in said
        assert list(p.kassa.payments) == [checkout.payment_id]


async def test_an_email_the_payment_asks_for_after_the_press_opens_the_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The press found an e-mail stored (the account as the update began); the payment, reading it again, finds none
    (erased meanwhile): the person is asked for it, not told that payments are unavailable."""
    chat = 5007
    async with in_process(tmp_path, receipt_enabled=True) as p:
        await add_user(p.services, p.tg, chat)
        await p.services.users.set_email(chat, "ann@example.com")
        await show_billing(p.bot, chat, await p.services.users.get(chat), p.services)
        screen = p.tg.sent_messages(chat)[-1]
        looked: list[str | None] = []
        needs_email = BillingService.needs_email

        def as_erased_after_the_press(self: BillingService, email: str | None) -> bool:
            looked.append(email)
            return needs_email(self, email if len(looked) == 1 else None)

        monkeypatch.setattr(BillingService, "needs_email", as_erased_after_the_press)
        await p.press(chat, screen.message_id, BUY_MONTH)
        assert looked == ["ann@example.com", "ann@example.com"]
        assert p.tg.sent_texts(chat)[-1] == texts.EMAIL_PROMPT
        assert p.kassa.payments == {}


async def test_the_cancel_button_of_a_form_left_for_an_hour_still_answers_in_place(tmp_path: Path) -> None:
    chat = 5005
    async with in_process(tmp_path, receipt_enabled=True) as p:
        p.tg.add_chat(chat)
        state = p.dispatcher.fsm.get_context(p.bot, chat_id=chat, user_id=chat)

        await ask_for_email(p.bot, chat, state, "month")
        fresh = p.tg.sent_messages(chat)[-1]
        await p.press(chat, fresh.message_id, CANCEL)
        assert current_text(p.tg, fresh) == (texts.PURCHASE_CANCELED, [])

        await ask_for_email(p.bot, chat, state, "month")
        left = p.tg.sent_messages(chat)[-1]
        await state.update_data({_OPENED: (await state.get_data())[_OPENED] - FORM_TTL_S - 1})
        await p.press(chat, left.message_id, CANCEL)
        assert current_text(p.tg, left) == (texts.EMAIL_FORM_CLOSED, [])
        assert await p.dispatcher.fsm.storage.get_state(StorageKey(p.bot.id, chat, chat)) is None


def current_text(tg: FakeTelegram, message: SentMessage) -> tuple[str | None, list[object]]:
    now = tg.message(message.chat_id, message.message_id)
    return now.text, list(now.buttons)


@pytest.mark.slow
async def test_the_locked_model_alert_points_to_the_premium_button_under_the_menu(
    running: tuple[BotHarness, FakeYooKassa],
) -> None:
    h, _ = running
    chat = h.new_chat()
    menu = await h.reply_settled(chat, "/model")
    assert menu.button_texts[-2:] == [bot_texts.MENU_BILLING, bot_texts.MODEL_EXIT]
    locked = next(m for m in load_catalog().models if m.premium_only)
    answer = await h.press(chat, menu, locked.title)
    await h.settle(quiet=0.3)
    # A command in an alert cannot be tapped: the alert points to the button.
    assert answer.get("show_alert") is True
    assert f"«{bot_texts.MENU_BILLING}»" in str(answer.get("text")) and "/billing" not in str(answer.get("text"))
    redrawn = current(h, menu)
    assert redrawn.button_texts[-2:] == [bot_texts.MENU_BILLING, bot_texts.MODEL_EXIT]
    await h.press_settled(chat, redrawn, bot_texts.MENU_BILLING, until=lambda m: (m.text or "").startswith("💎"))
    screen = h.tg.sent_messages(chat)[-1]
    assert any(text.startswith("Месяц") for text in screen.button_texts)


@pytest.mark.slow
async def test_a_plan_pressed_is_answered_at_once_not_after_yookassa(running: tuple[BotHarness, FakeYooKassa]) -> None:
    h, _ = running
    chat = h.new_chat()
    async with h.services() as services:
        await services.users.ensure(chat)
        await services.users.set_email(chat, "ann@example.ru")
    screen = await h.reply_settled(chat, "/billing")
    query = h.tg.press_button(chat, screen.message_id, str(screen.button("Месяц")["callback_data"]))
    await h.tg.wait_for_message(chat, invoice("месяц"), timeout=15, after_message_id=screen.message_id)
    await h.settle(quiet=0.3)
    answers = [c for c in h.tg.calls_of("answerCallbackQuery") if c.params.get("callback_query_id") == query]
    assert [c.params.get("text") for c in answers] == [texts.CREATING_INVOICE]
    sent = next(
        c
        for c in h.tg.calls_of("sendMessage")
        if int(c.params["chat_id"]) == chat and str(c.params.get("text", "")).startswith("Счёт создан")
    )
    # The button stops spinning before YooKassa is asked, not once the invoice is there.
    assert answers[0].time < sent.time
