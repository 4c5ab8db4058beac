"""Where a dialog's context lives: the database for people, memory for a local operator session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from piccolo.engine.sqlite import SQLiteEngine

from pomogator.store.engine import write_transaction
from pomogator.store.tables import DialogMessage, User
from pomogator.timeutil import utcnow

Content = str | list[dict[str, Any]]

# Older turns are never sent (the context window would drop them anyway), so never loaded.
HISTORY_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the context; ``id`` is its row's when it was read from the database."""

    role: str
    content: Content
    tokens: int
    model: str | None = None
    id: int | None = None


def encode_content(content: Content) -> str:
    """A turn's content as stored: Piccolo takes a str as already-encoded JSON, so every value is encoded here."""
    return json.dumps(content, ensure_ascii=False)


def decode_content(stored: Any) -> Content:
    """A turn's content as read back: the JSON column arrives as text from a raw query, decoded from Piccolo's."""
    decoded: Content = orjson.loads(stored) if isinstance(stored, str) else stored
    return decoded


class Conversation(Protocol):
    async def history(self) -> list[Turn]: ...

    async def append(self, turns: list[Turn]) -> None: ...

    async def clear(self) -> int: ...


class StoredConversation:
    def __init__(self, telegram_id: int) -> None:
        self.telegram_id = telegram_id

    async def history(self) -> list[Turn]:
        rows = (
            await DialogMessage.select(
                DialogMessage.id, DialogMessage.role, DialogMessage.content, DialogMessage.tokens, DialogMessage.model
            )
            .where(DialogMessage.telegram_id == self.telegram_id)
            .order_by(DialogMessage.id, ascending=False)
            .limit(HISTORY_LIMIT)
            .output(load_json=True)
        )
        return [Turn(r["role"], r["content"], r["tokens"], r["model"], r["id"]) for r in reversed(rows)]

    async def append(self, turns: list[Turn]) -> None:
        now = utcnow()
        await DialogMessage.insert(
            *(
                DialogMessage(
                    telegram_id=self.telegram_id,
                    role=t.role,
                    content=encode_content(t.content),
                    tokens=t.tokens,
                    model=t.model,
                    created_at=now,
                )
                for t in turns
            )
        )

    async def rewrite(self, turns: list[Turn]) -> None:
        """Store the content and tokens of ``turns`` (read from here, with their ``id``) in place of their rows':
        old turns lose their images this way. A row deleted meanwhile stays deleted."""
        for turn in turns:
            if turn.id is None:
                continue
            await DialogMessage.update(
                {DialogMessage.content: encode_content(turn.content), DialogMessage.tokens: turn.tokens}
            ).where((DialogMessage.id == turn.id) & (DialogMessage.telegram_id == self.telegram_id))

    async def clear(self) -> int:
        """Forget the context; returns how many turns were forgotten. An answer whose request started before this
        is not stored afterwards (``ChatService`` compares its start with ``users.context_cleared_at``)."""
        engine = DialogMessage._meta.db
        async with write_transaction(engine):
            if not isinstance(engine, SQLiteEngine):
                # FOR UPDATE waits for an answer being stored (it holds the row FOR KEY SHARE), so the DELETE below
                # sees its turns; an answer stored after this sees the new time. SQLite's write transactions never
                # overlap.
                await User.select(User.telegram_id).where(User.telegram_id == self.telegram_id).lock_rows("UPDATE")
            await User.update({User.context_cleared_at: utcnow()}).where(User.telegram_id == self.telegram_id)
            deleted = (
                await DialogMessage.delete()
                .where(DialogMessage.telegram_id == self.telegram_id)
                .returning(DialogMessage.id)
            )
        return len(deleted)


class MemoryConversation:
    """The context of a local ``pomogator chat`` session without --user; gone when the session ends."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    async def history(self) -> list[Turn]:
        return list(self.turns[-HISTORY_LIMIT:])

    async def append(self, turns: list[Turn]) -> None:
        self.turns.extend(turns)

    async def clear(self) -> int:
        count = len(self.turns)
        self.turns.clear()
        return count
