"""Typed callback data of every inline button.

Telegram allows 64 bytes of callback data, and aiogram rejects ':' inside values, so buttons carry small
numbers (a catalog index, an answer id) and never a raw model id.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData


class MenuAction(StrEnum):
    model = "model"
    role = "role"
    profile = "profile"
    billing = "billing"
    help = "help"
    delete_context = "ctx"


class MenuCallback(CallbackData, prefix="menu"):
    """A /start menu button: does what the command of the same name does."""

    action: MenuAction


class ModelAction(StrEnum):
    pick = "pick"
    exit = "exit"


class ModelCallback(CallbackData, prefix="mdl"):
    action: ModelAction
    key: str = ""
    """``Model.key``: stable when the catalog changes, so an old menu's button picks the model it names."""


class RoleAction(StrEnum):
    cancel = "cancel"
    delete = "delete"


class RoleCallback(CallbackData, prefix="role"):
    action: RoleAction


class DeleteMeCallback(CallbackData, prefix="delme"):
    confirm: bool


class StopCallback(CallbackData, prefix="stop"):
    """The Stop button under a streaming answer."""

    answer: int


class BillingAction(StrEnum):
    buy = "buy"
    email = "email"
    cancel_email = "noemail"


class BillingCallback(CallbackData, prefix="bill"):
    action: BillingAction
    plan: str = ""
