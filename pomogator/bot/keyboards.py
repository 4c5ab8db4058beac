"""Inline keyboards."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from pomogator.billing import texts as billing_texts
from pomogator.bot import texts
from pomogator.bot.callbacks import (
    BillingAction,
    BillingCallback,
    DeleteMeCallback,
    MenuAction,
    MenuCallback,
    ModelAction,
    ModelCallback,
    RoleAction,
    RoleCallback,
    StopCallback,
)
from pomogator.llm.catalog import Catalog
from pomogator.services.users import Account

if TYPE_CHECKING:
    from pomogator.services.billing import Checkout
    from pomogator.services.payments import Plan

_MENU: tuple[tuple[str, MenuAction], ...] = (
    (texts.MENU_MODEL, MenuAction.model),
    (texts.MENU_ROLE, MenuAction.role),
    (texts.MENU_PROFILE, MenuAction.profile),
    (texts.MENU_BILLING, MenuAction.billing),
    (texts.MENU_HELP, MenuAction.help),
    (texts.MENU_DELETE_CONTEXT, MenuAction.delete_context),
)


def make_start_keyboard() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for text, action in _MENU:
        builder.button(text=text, callback_data=MenuCallback(action=action))
    builder.adjust(2)
    return builder.as_markup()


def make_model_keyboard(catalog: Catalog, account: Account, *, premium_on_sale: bool = False) -> InlineKeyboardMarkup:
    """One button per model (✅ current, 🔒 premium-only for a free user) and an exit button; beside it, for a free
    user while premium is on sale, the premium button (what the alert refusing a 🔒 model points to)."""
    builder = InlineKeyboardBuilder()
    for model in catalog.models:
        text = texts.model_button(
            model, current=model.id == account.model.id, locked=model.premium_only and not account.premium
        )
        builder.button(text=text, callback_data=ModelCallback(action=ModelAction.pick, key=model.key))
    last = 1
    if premium_on_sale and not account.premium and any(m.premium_only for m in catalog.models):
        builder.button(text=texts.MENU_BILLING, callback_data=MenuCallback(action=MenuAction.billing))
        last = 2
    builder.button(text=texts.MODEL_EXIT, callback_data=ModelCallback(action=ModelAction.exit))
    builder.adjust(*[1] * len(catalog.models), last)
    return builder.as_markup()


def make_role_keyboard(*, has_role: bool) -> InlineKeyboardMarkup:
    """Cancel, and Delete only when there is a role to delete."""
    builder = InlineKeyboardBuilder()
    builder.button(text=texts.ROLE_CANCEL, callback_data=RoleCallback(action=RoleAction.cancel))
    if has_role:
        builder.button(text=texts.ROLE_DELETE, callback_data=RoleCallback(action=RoleAction.delete))
    builder.adjust(2)
    return builder.as_markup()


def make_delete_me_keyboard() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=texts.DELETE_ME_CONFIRM, callback_data=DeleteMeCallback(confirm=True))
    builder.button(text=texts.DELETE_ME_CANCEL, callback_data=DeleteMeCallback(confirm=False))
    builder.adjust(1)
    return builder.as_markup()


def make_stop_keyboard(answer_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=texts.STOP_BUTTON, callback_data=StopCallback(answer=answer_id).pack())]
        ]
    )


def make_billing_keyboard(plans: Iterable[Plan], *, receipts: bool) -> InlineKeyboardMarkup:
    """A button per plan, and with receipts on one to change the receipt e-mail."""
    builder = InlineKeyboardBuilder()
    for plan in plans:
        builder.button(
            text=billing_texts.plan_button(plan.name, plan.price),
            callback_data=BillingCallback(action=BillingAction.buy, plan=plan.name),
        )
    if receipts:
        builder.button(
            text=billing_texts.CHANGE_EMAIL_BUTTON, callback_data=BillingCallback(action=BillingAction.email)
        )
    builder.adjust(2, 1)
    return builder.as_markup()


def make_pay_keyboard(checkout: Checkout) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=billing_texts.pay_button(checkout.amount), url=checkout.confirmation_url)
    return builder.as_markup()


def make_email_keyboard() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text="Отмена", callback_data=BillingCallback(action=BillingAction.cancel_email))
    return builder.as_markup()
