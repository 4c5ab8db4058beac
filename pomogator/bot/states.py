"""Conversation states (aiogram FSM)."""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup


class RoleForm(StatesGroup):
    """After /role the next text message becomes the role."""

    waiting = State()


class EmailForm(StatesGroup):
    """The next text message is the receipt email; ``plan`` in the state data is bought right after it."""

    waiting = State()
