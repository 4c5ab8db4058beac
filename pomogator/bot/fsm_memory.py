"""In-process FSM storage (one bot instance, no Redis) that holds only the chats with a state or data.

aiogram's ``MemoryStorage`` creates a record for every key it is asked about, and its dispatcher asks for the
state of every update's chat: a bot that has served a million people would keep a million empty records (~400
bytes and two objects the garbage collector walks, each) for as long as it runs. Here reading creates nothing,
and a chat whose state and data are both cleared is forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey


class SparseMemoryStorage(BaseStorage):
    def __init__(self) -> None:
        self._states: dict[StorageKey, str] = {}
        self._data: dict[StorageKey, dict[str, Any]] = {}

    @property
    def chats(self) -> int:
        """How many chats have a state or data. (Not ``__len__``: an empty storage must not be falsy, or
        ``storage or MemoryStorage()`` would replace it.)"""
        return len(self._states.keys() | self._data.keys())

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        if value is None:
            self._states.pop(key, None)
        else:
            self._states[key] = value

    async def get_state(self, key: StorageKey) -> str | None:
        return self._states.get(key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            msg = f"Data must be a dict or dict-like object, got {type(data).__name__}"
            raise DataNotDictLikeError(msg)
        if data:
            self._data[key] = data.copy()
        else:
            self._data.pop(key, None)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        data = self._data.get(key)
        return {} if data is None else data.copy()

    async def close(self) -> None:
        self._states.clear()
        self._data.clear()
