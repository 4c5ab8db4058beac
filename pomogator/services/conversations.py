"""Where a dialog's context lives: the database for people, memory for a local operator session."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from piccolo.engine.sqlite import SQLiteEngine

from pomogator.store.engine import raw, write_transaction
from pomogator.store.tables import DialogMessage, User
from pomogator.timeutil import utcnow

Content = str | list[dict[str, Any]]

# Older turns are never sent (the context window would drop them anyway), so never loaded.
HISTORY_LIMIT = 200


StoredJSON = bytes
"""A turn's content as read from the database: the JSON it is stored as, in UTF-8, decoded only when looked into.

A request sends the context's turns on as they were stored (``Turn.for_request``): decoding a long dialog's 200 turns
(~170 k characters) and encoding them again cost the bot ~1.5 ms of CPU per message, a sixth of all it spent on such
a message. Text turns, nearly all of them, are never decoded; turns with images or files are, to find and drop old
media (``pomogator.services.chat.with_recent_media``). Plain bytes, not an object of its own: under load every
object the collector tracks makes its young collections come sooner, and a long context has 200 of them.
"""


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the context; ``id`` is its row's when it was read from the database, and then ``content`` is
    the JSON stored (``StoredJSON``)."""

    role: str
    content: Content | StoredJSON
    tokens: int
    model: str | None = None
    id: int | None = None

    def decoded(self) -> Content:
        content = self.content
        return cast(Content, orjson.loads(content)) if isinstance(content, bytes) else content

    def for_request(self) -> Content | orjson.Fragment:
        """The content as a request body carries it: a stored turn's JSON goes in as it is."""
        content = self.content
        return orjson.Fragment(content) if isinstance(content, bytes) else content


def encode_content(content: Content | StoredJSON) -> str:
    """A turn's content as stored: Piccolo takes a str as already-encoded JSON, so every value is encoded here."""
    if isinstance(content, bytes):
        return content.decode()
    return json.dumps(content, ensure_ascii=False)


def stored_content(column: str, *, sqlite: bool) -> str:
    """SQL that reads the JSON ``column`` of a turn as its UTF-8 bytes (``StoredJSON``): read as text, it would be
    decoded into a str first (~0.5 ms for a long dialog)."""
    if sqlite:
        return f"CAST({column} AS BLOB)"
    return f"convert_to({column}::text, 'UTF8')"


TURN_SEPARATOR = b"\x1e"
"""Between the stored JSON of the turns ``latest_turns_sql`` reads in one piece. No JSON text holds it: JSON strings
escape every control character, and UTF-8 encodes no other character with a byte under 0x80."""


def latest_turns_sql(where: str) -> str:
    """PostgreSQL: a query of one row, the latest ``HISTORY_LIMIT`` turns matching ``where`` oldest first, one column
    per field (``turns_of``); a row of NULLs when there are none.

    One row, not one per turn: the statements that read the context return it beside other columns, which asyncpg
    decoded again for every turn (~0.5-0.8 ms of the bot's CPU per message of a 200-turn dialog). Arrays of text and
    one bytea: for arrays of other types asyncpg looks the types up on every new connection, three round trips.
    """
    content = stored_content("content", sqlite=False)
    return (
        "SELECT array_agg(id::text ORDER BY id) AS turn_ids, array_agg(role::text ORDER BY id) AS turn_roles, "
        "array_agg(tokens::text ORDER BY id) AS turn_tokens, array_agg(model::text ORDER BY id) AS turn_models, "
        f"string_agg({content}, decode('1e', 'hex') ORDER BY id) AS turn_contents "
        f"FROM (SELECT id, role, content, tokens, model FROM dialog_messages WHERE {where} "
        f"ORDER BY id DESC LIMIT {HISTORY_LIMIT}) AS latest"
    )


def turns_of(row: Mapping[str, Any]) -> list[Turn]:
    """The turns of a row with ``latest_turns_sql``'s columns."""
    ids = row["turn_ids"]
    if ids is None:
        return []
    contents = row["turn_contents"].split(TURN_SEPARATOR)
    return [
        Turn(role, content, int(tokens), model, int(turn_id))
        for turn_id, role, tokens, model, content in zip(
            ids, row["turn_roles"], row["turn_tokens"], row["turn_models"], contents, strict=True
        )
    ]


_LATEST = f"FROM dialog_messages WHERE telegram_id = {{}} ORDER BY dialog_messages.id DESC LIMIT {HISTORY_LIMIT}"
# One request's two turns share their ``created_at`` (``ChatService`` stores them with one statement).
FORGET_SQL = "DELETE FROM dialog_messages WHERE telegram_id = {} AND created_at = {}"
HISTORY_SQL = {
    False: f"SELECT id, role, {stored_content('content', sqlite=False)} AS content, tokens, model {_LATEST}",
    # The integers are cast: a column of a declared INTEGER type goes through Piccolo's converter (a Decimal made of
    # each value), ~0.4 ms for 200 turns.
    True: f"SELECT CAST(id AS INTEGER) AS id, role, {stored_content('content', sqlite=True)} AS content, "
    f"CAST(tokens AS INTEGER) AS tokens, model {_LATEST}",
}
"""``StoredConversation.history``'s statement on PostgreSQL (False) and SQLite (True)."""


class StoredConversation:
    def __init__(self, telegram_id: int) -> None:
        self.telegram_id = telegram_id

    async def history(self) -> list[Turn]:
        sqlite = isinstance(DialogMessage._meta.db, SQLiteEngine)
        rows = await raw(DialogMessage, HISTORY_SQL[sqlite], self.telegram_id)
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

    async def forget_stored_at(self, created_at: datetime) -> None:
        """Forget the turns stored at ``created_at``: one request's question and answer, stored together."""
        await raw(DialogMessage, FORGET_SQL, self.telegram_id, created_at)

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
