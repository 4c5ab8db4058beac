"""Stored dialogs for the long-context scenario: every chat of the load starts with a context of ``turns`` turns, as
a person who has talked to the bot for a while has (the bot reads up to ``HISTORY_LIMIT`` of them per message)."""

from __future__ import annotations

import random
from datetime import timedelta

from pomogator.llm.tokens import estimate_content
from pomogator.services.conversations import encode_content
from pomogator.store.engine import Database
from pomogator.store.tables import DialogMessage
from pomogator.timeutil import utcnow

# A question of ~200 characters and an answer of ~1500, Cyrillic as most of this bot's dialogs are.
WORDS = [
    "модель",
    "ответ",
    "запрос",
    "контекст",
    "пример",
    "данные",
    "функция",
    "значение",
    "список",
    "таблица",
    "строка",
    "число",
    "время",
    "пользователь",
    "сообщение",
    "вопрос",
    "результат",
    "ошибка",
    "проверка",
    "настройка",
    "база",
    "сервер",
    "клиент",
    "поток",
    "текст",
    "формат",
    "код",
]
QUESTION_CHARS = 200
ANSWER_CHARS = 1500
BATCH = 1000


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words).capitalize() + "."


async def seed_contexts(url: str, first_chat: int, chats: int, turns: int) -> int:
    """Store ``turns`` alternating turns (the person's first) for each of ``chats`` chats from ``first_chat``;
    returns the characters of one chat's context."""
    rng = random.Random(turns)
    contents = [_text(rng, QUESTION_CHARS if index % 2 == 0 else ANSWER_CHARS) for index in range(turns)]
    encoded = [(encode_content(content), estimate_content(content)) for content in contents]
    started = utcnow() - timedelta(days=1)
    database = Database(url)
    await database.start(migrate=False)
    try:
        rows = [
            DialogMessage(
                telegram_id=chat,
                role="user" if index % 2 == 0 else "assistant",
                content=stored,
                model=None if index % 2 == 0 else "openai/gpt-4o-mini",
                tokens=tokens,
                created_at=started + timedelta(seconds=index),
            )
            for chat in range(first_chat, first_chat + chats)
            for index, (stored, tokens) in enumerate(encoded)
        ]
        for start in range(0, len(rows), BATCH):
            await DialogMessage.insert(*rows[start : start + BATCH])
    finally:
        await database.close()
    return sum(len(content) for content in contents)
