"""/billing: the two plans, the premium status, the payment link, and the receipt email.

Texts come from :mod:`pomogator.billing.texts` (shared with the web process, which must not import aiogram) and are
plain, so they are sent with ``parse_mode=None`` whatever the bot's default is. Errors of the billing service are
translated by the bot's ``ErrorMiddleware``; a mistyped email is answered here, as the email form's own loop, and
so is one YooKassa refuses for the receipt (the form opens again). The email form ends with /cancel, a typed
"Отмена", its Cancel button, or any other command or button (``pomogator.bot.middlewares.forms``); its prompt loses
the Cancel button then (ended by another command or button, it says so in place of the prompt), and a Cancel
pressed on a prompt whose form is already over says so in place. /help and /profile leave it waiting.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from pomogator.billing import texts
from pomogator.bot import texts as bot_texts
from pomogator.bot.answer.output import ChatOutput
from pomogator.bot.answer.renderer import typing_shown
from pomogator.bot.callbacks import BillingAction, BillingCallback, MenuAction, MenuCallback
from pomogator.bot.filters import is_cancel_word, is_command
from pomogator.bot.keyboards import make_billing_keyboard, make_email_keyboard, make_pay_keyboard
from pomogator.bot.middlewares import CallbackReply
from pomogator.bot.middlewares.forms import FORM, close_form, is_prompt_of, open_form, remove_buttons
from pomogator.bot.replies import chat_id_of, replace_text
from pomogator.bot.states import EmailForm
from pomogator.config import Settings
from pomogator.container import Services
from pomogator.errors import EmailRequired, InvalidEmail, PaymentAlreadyMade
from pomogator.services.users import Account


def make_router() -> Router:
    router = Router(name="billing")
    router.message.register(on_billing, Command("billing", ignore_case=True))
    router.callback_query.register(on_billing_button, MenuCallback.filter(F.action == MenuAction.billing))
    router.callback_query.register(on_plan, BillingCallback.filter(F.action == BillingAction.buy))
    router.callback_query.register(on_change_email, BillingCallback.filter(F.action == BillingAction.email))
    # Form handlers (FORM): they read what the form was opened for before closing it.
    router.callback_query.register(
        on_cancel_email,
        StateFilter(EmailForm.waiting),
        BillingCallback.filter(F.action == BillingAction.cancel_email),
        flags={FORM: True},
    )
    router.callback_query.register(
        on_closed_email_prompt, BillingCallback.filter(F.action == BillingAction.cancel_email)
    )
    router.message.register(
        on_cancel_email_command, StateFilter(EmailForm.waiting), F.text, F.func(is_cancel_word), flags={FORM: True}
    )
    router.message.register(
        on_cancel_email_command, StateFilter(EmailForm.waiting), Command("cancel", ignore_case=True), flags={FORM: True}
    )
    router.message.register(
        on_email,
        StateFilter(EmailForm.waiting),
        F.text,
        ~F.func(is_command),
        ~F.func(is_cancel_word),
        flags={FORM: True},
    )
    return router


async def show_billing(bot: Bot, chat_id: int, account: Account, services: Services) -> None:
    settings = services.settings
    if not settings.billing_configured:
        # No shop configured: premium cannot be bought here yet.
        await send_billing_soon(bot, chat_id, account, settings)
        return
    billing = services.billing
    await bot.send_message(
        chat_id,
        texts.billing_screen(
            premium_until=account.premium_until,
            plans=[(p.name, p.price, p.days) for p in billing.plans.values()],
            tz=settings.tz,
            offer_url=settings.offer_url,
            privacy_url=settings.privacy_url,
            email=account.email,
            receipts=settings.receipt_enabled,
        ),
        reply_markup=make_billing_keyboard(services.billing.plans.values(), receipts=settings.receipt_enabled),
        parse_mode=None,
    )


async def send_billing_soon(bot: Bot, chat_id: int, account: Account, settings: Settings) -> None:
    """Premium cannot be bought here: one who has it (given by the admins) is told until when."""
    text = bot_texts.billing_soon(settings.support_contact, premium_until=account.premium_until, tz=settings.tz)
    await bot.send_message(chat_id, text)


async def ask_for_email(bot: Bot, chat_id: int, state: FSMContext, plan: str | None, text: str | None = None) -> None:
    text = text or (texts.EMAIL_PROMPT if plan else texts.EMAIL_CHANGE_PROMPT)
    prompt = await bot.send_message(chat_id, text, reply_markup=make_email_keyboard(), parse_mode=None)
    closed = texts.PURCHASE_INPUT_CLOSED if plan else texts.EMAIL_INPUT_CLOSED
    await open_form(state, EmailForm.waiting, prompt_id=prompt.message_id, closed_text=closed, plan=plan)


async def checkout(bot: Bot, chat_id: int, account: Account, plan: str, services: Services, state: FSMContext) -> None:
    """Create (or reuse) the payment and send its link, in the text and as a button."""
    me = await bot.me()  # asked once per process, then kept by aiogram
    try:
        # YooKassa may take many seconds (retries included): "typing…" shows the bot is at it.
        async with typing_shown(ChatOutput(bot, chat_id)):
            result = await services.billing.start_payment(
                account.telegram_id, plan, bot_link=f"https://t.me/{me.username}"
            )
    except PaymentAlreadyMade as paid:
        await bot.send_message(chat_id, texts.already_paid(paid.premium_until, services.settings.tz), parse_mode=None)
        return
    except EmailRequired:
        # None stored after all (erased meanwhile, say): asked for, and the payment goes on once it is given.
        await ask_for_email(bot, chat_id, state, plan)
        return
    except InvalidEmail:
        # YooKassa refused the stored address for the receipt: a typo of the person's, asked for again.
        email = (await services.users.get(account.telegram_id)).email or ""
        await ask_for_email(bot, chat_id, state, plan, texts.email_refused(email))
        return
    await bot.send_message(
        chat_id,
        texts.checkout(
            result.plan, result.amount, result.confirmation_url, reused=result.reused, also_pending=result.also_pending
        ),
        reply_markup=make_pay_keyboard(result),
        parse_mode=None,
    )


async def on_billing(message: Message, bot: Bot, account: Account, services: Services) -> None:
    await show_billing(bot, message.chat.id, account, services)


async def on_billing_button(query: CallbackQuery, bot: Bot, account: Account, services: Services) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await show_billing(bot, chat_id, account, services)


async def on_plan(
    query: CallbackQuery,
    callback_data: BillingCallback,
    bot: Bot,
    account: Account,
    services: Services,
    settings: Settings,
    state: FSMContext,
    callback_reply: CallbackReply,
) -> None:
    chat_id = chat_id_of(query)
    if chat_id is None:
        return
    if not settings.billing_configured:
        await send_billing_soon(bot, chat_id, account, settings)
        return
    if services.billing.needs_email(account.email):
        await ask_for_email(bot, chat_id, state, callback_data.plan)
        return
    await callback_reply.answer_now(texts.CREATING_INVOICE)  # the button would spin while YooKassa answers
    await checkout(bot, chat_id, account, callback_data.plan, services, state)


async def on_change_email(query: CallbackQuery, bot: Bot, state: FSMContext) -> None:
    chat_id = chat_id_of(query)
    if chat_id is not None:
        await ask_for_email(bot, chat_id, state, None)


async def cancel_email(state: FSMContext) -> str:
    """What to say when the e-mail form is cancelled: the purchase it was asked for is off, or the e-mail stays as
    it was."""
    return texts.PURCHASE_CANCELED if (await state.get_data()).get("plan") else texts.EMAIL_CANCELED


async def on_cancel_email(query: CallbackQuery, bot: Bot, state: FSMContext) -> None:
    chat_id = chat_id_of(query)
    if chat_id is None:
        return
    pressed = query.message.message_id if query.message is not None else None
    if pressed is not None and not await is_prompt_of(state, EmailForm.waiting, pressed):
        await remove_buttons(bot, chat_id, pressed)  # an earlier prompt's: the form waits for the newer one's answer
        return
    said = await cancel_email(state)
    await state.clear()
    await replace_text(bot, query, said)  # the prompt itself says it, without its button


async def on_closed_email_prompt(query: CallbackQuery, bot: Bot) -> None:
    """Cancel on a prompt whose form is over: left for an hour (``FORM_TTL_S``), or ended by another command."""
    await replace_text(bot, query, texts.EMAIL_FORM_CLOSED)


async def on_cancel_email_command(message: Message, bot: Bot, state: FSMContext) -> None:
    said = await cancel_email(state)
    await close_form(state, bot, message.chat.id)
    await message.answer(said, parse_mode=None)


async def on_email(message: Message, bot: Bot, account: Account, services: Services, state: FSMContext) -> None:
    try:
        email = await services.users.set_email(account.telegram_id, message.text or "")
    except InvalidEmail:
        await message.answer(texts.EMAIL_INVALID, parse_mode=None)  # the form stays open
        return
    plan = (await state.get_data()).get("plan")
    await close_form(state, bot, message.chat.id)
    paying = isinstance(plan, str) and bool(plan)
    await message.answer(texts.email_saved(email, paying=paying), parse_mode=None)
    if paying:
        await checkout(bot, message.chat.id, account, str(plan), services, state)
