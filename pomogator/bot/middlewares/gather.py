"""One request from several messages: an album, a long text that the Telegram client split before sending, or
messages forwarded together.

Telegram delivers every photo of an album, every piece of a pasted text over 4096 characters and every message of
a forward as a message of its own. They are gathered into one request (one quota unit, one model call, one answer)
by two middlewares that share a ``Gatherer``:

* ``gatherer.arrivals`` sits before the flood guard and the per-chat queue. A message that continues a batch in
  progress joins it and is finished: it never queues for the chat, so it cannot wait behind the batch it belongs
  to. A message that may start a batch (one with a ``media_group_id``, a photo or a file, a text at or near the
  length limit, any forwarded message) opens one and goes on alone, taking its place in the chat's queue in arrival
  order.
* ``gatherer.completion`` sits right after the per-chat queue. In the chat's turn, the first message of a batch
  waits until no part has come for ``window`` seconds (a split text ends sooner, at its first short piece), then
  goes on for all of them: an album's messages are handed to the handler as ``album``; a split text, or the
  forwarded texts, become one message with the whole text, so every handler (the role input too) sees it whole.
  Forwarded texts from several senders are each headed with their sender's name, for the model to tell them apart.
  Forwards that carry photos or files (albums among them) go on as an album of those, whose caption (the question,
  as a photo's caption is) holds the forwarded texts and captions, joined the same way; if none of its files can
  be read (an album of videos), the texts are answered alone.

Every forwarded message of the user joins the forward in progress, whatever its kind: a sticker, a voice message or
a poll in the middle of a forwarded chat excerpt would otherwise cut it into several requests, each answered (and
counted) with half the context, each counted by the flood guard. What the bot cannot read is left out when the
forward is complete and the user is told once (``files_texts.skipped_parts``), once the quota allows the request; a
forward of nothing but such messages gets the one reply a single one would. Only a message that is not forwarded
ends a forward.

A comment the user adds to a forward is sent by the client just before the forwarded messages. Waiting to see
whether forwards follow would hold up every short message, so a plain text goes on at once as a ``Comment``
(``pomogator.bot.comments``): a forward that follows it within ``window`` seconds withdraws it from its own answer,
if nothing of that answer shows yet, and the comment becomes the forward's first text (the question, as a photo's
caption is), ahead of the forwarded texts and captions. Taken before its turn, it is not answered on its own; only a
form waiting for it (the /role input) takes it back, and the forward then goes alone.

Photos and files work the same way. Telegram Desktop sends the comment typed for several files as a text of its
own, right before the album (or the files, when they are not grouped), and some clients send a caption too long
for a file after it. An album, and photos or files sent one by one outside an album within ``window`` of each other,
are one request that takes the text just before it as a forward does, and the first short text sent right after it
(before it is complete): those texts are the question, around the captions. A lone text is still answered at once.

A part that arrives after its batch went on starts a request of its own: parts are never dropped. Batches live
in this process; several bot instances behind a webhook would need the parts of an album to reach one instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from aiogram import BaseMiddleware
from aiogram.types import (
    Message,
    MessageOriginChannel,
    MessageOriginChat,
    MessageOriginHiddenUser,
    MessageOriginUser,
    TelegramObject,
    Update,
)
from loguru import logger

from pomogator.bot.attachments import unreadable_kind
from pomogator.bot.comments import COMMENT_KEY, Comment
from pomogator.bot.filters import is_command
from pomogator.services.formatting import utf16_len

WINDOW = 0.8
"""Seconds without a new part after which a batch is complete."""

SPLIT_TEXT_MIN = 3000
"""A text this long (UTF-16 units) may be the first piece of a split one. Clients cut at most 4096 units, at a
paragraph or word boundary when there is one, so a piece is often somewhat shorter than the limit."""

SPLIT_MAX_DATE_GAP = timedelta(seconds=2)
"""Pieces of one text are sent within a moment; ``Message.date`` has one-second resolution. This also keeps apart
messages that were written minutes apart but arrive together (the bot was down)."""

BATCH_KEY = "gather_batch"
ALBUM_KEY = "album"
WITH_TEXTS_KEY = "with_texts"
"""True for an album made of forwards that had texts among them: the texts can be answered without the files."""
LEFT_OUT_KEY = "left_out"
"""What was left out of forwarded texts (``attachments.unreadable_kind`` of each message), for the notice."""


BatchKind = Literal["album", "files", "split text", "forwards"]


@dataclass(eq=False)
class Batch:
    chat_id: int
    kind: BatchKind
    media_group_id: str | None
    messages: list[Message]
    last_arrival: float
    open: bool = True
    # The comment the user sent with the forward, if the forward took it (a form may take it back: ``withdrawn``).
    comment: Comment | None = None
    # A short text the user sent right after an album or files (Telegram Desktop sends the comment for several files
    # as a text of its own), their question as much as a caption is.
    after: Message | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants_more(self) -> bool:
        if not self.open:
            return False
        # A split text ends with its first piece that is clearly shorter than the limit.
        return self.kind != "split text" or utf16_len(self.messages[-1].text or "") >= SPLIT_TEXT_MIN

    def add(self, message: Message, now: float) -> None:
        self.messages.append(message)
        self.last_arrival = now
        self.changed.set()

    def close(self) -> None:
        self.open = False
        self.changed.set()


def _is_plain_text(message: Message) -> bool:
    return message.text is not None and message.media_group_id is None and message.forward_origin is None


def _has_files(message: Message) -> bool:
    """A photo, a document or an album's part: what the files handler takes (an animation carries a document, and
    is refused as a video)."""
    return (
        bool(message.photo)
        or (message.document is not None and message.animation is None)
        or message.media_group_id is not None
    )


def _is_loose_file(message: Message) -> bool:
    """A photo or a file the user sent (not forwarded) outside an album: several sent at once are one request."""
    return message.forward_origin is None and message.media_group_id is None and _has_files(message)


def _is_readable(message: Message) -> bool:
    """A text, a photo or a file: what a forward is answered with. Other kinds (stickers, voice messages, polls,
    locations...) are left out of it, and so is an album's video by the files handler."""
    return message.text is not None or _has_files(message)


def _same_sender(previous: Message, message: Message) -> bool:
    return (previous.from_user.id if previous.from_user else None) == (
        message.from_user.id if message.from_user else None
    )


def _continues(previous: Message, message: Message) -> bool:
    """Whether ``message`` can be the next piece of a text that ends with ``previous``.

    A command is taken for what Telegram marks it as: a piece that starts with one is answered on its own.
    """
    if not _is_plain_text(message) or is_command(message):
        return False
    return _same_sender(previous, message) and abs(message.date - previous.date) <= SPLIT_MAX_DATE_GAP


def join_text(messages: list[Message]) -> str:
    """The pieces of a split text, joined.

    A client cuts after a space or a line break when it can; Telegram then trims each piece, so where neither
    side of a cut has whitespace left, a space goes back in.
    """
    text = ""
    for message in messages:
        piece = message.text or ""
        if text and piece and not text[-1].isspace() and not piece[0].isspace():
            text += " "
        text += piece
    return text


def origin_name(message: Message) -> str | None:
    """Who wrote a forwarded message, as Telegram shows it: a person's name, a chat's or channel's title (with the
    post's signature)."""
    origin = message.forward_origin
    if isinstance(origin, MessageOriginUser):
        return origin.sender_user.full_name
    if isinstance(origin, MessageOriginHiddenUser):
        return origin.sender_user_name
    if isinstance(origin, MessageOriginChat | MessageOriginChannel):
        chat = origin.sender_chat if isinstance(origin, MessageOriginChat) else origin.chat
        title = chat.title or chat.full_name
        return f"{title} ({origin.author_signature})" if origin.author_signature else title
    return None


def join_forwards(messages: list[Message], comment: str | None = None) -> str:
    """The texts and captions of forwarded messages as one: each headed with its sender when they come from more
    than one, after the ``comment`` sent with them."""
    worded = [message for message in messages if message.text or message.caption]
    names = [origin_name(message) for message in worded]
    heads = [f"{name}:\n" if name and len(set(names)) > 1 else "" for name in names]
    texts = [head + (message.text or message.caption or "") for head, message in zip(heads, worded, strict=True)]
    return "\n\n".join([comment, *texts] if comment else texts)


def with_comments(files: list[Message], before: str | None, after: str | None) -> list[Message]:
    """An album or files with the texts the user sent just before and just after them: the first one's caption is
    those texts around the captions (``question_of`` joins them), the others' captions are left out."""
    captions = [message.caption for message in files if message.caption and message.caption.strip()]
    caption = "\n\n".join(text for text in [before, *captions, after] if text)
    return [
        message.model_copy(update={"caption": caption if index == 0 else None, "caption_entities": None})
        for index, message in enumerate(files)
    ]


def as_album(forwards: list[Message], comment: str | None = None) -> list[Message]:
    """Forwards that carry photos or files as an album of those: its caption, on the first, is the comment and every
    forwarded text and caption (``join_forwards``). The messages the bot cannot read come last, for the files
    handler to leave out with the album's videos and tell about once."""
    files = [message for message in forwards if _has_files(message)]
    files += [message for message in forwards if not _is_readable(message)]
    caption = join_forwards(forwards, comment) or None
    return [
        message.model_copy(update={"caption": caption if index == 0 else None, "caption_entities": None})
        for index, message in enumerate(files)
    ]


class Gatherer:
    """Open batches per chat, and the two middlewares that fill and complete them (see the module docstring)."""

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._open: dict[int, list[Batch]] = {}
        # Each chat's latest plain text, while it is handled: it may be a forward's comment.
        self._comments: dict[int, Comment] = {}
        self.arrivals = _Arrivals(self)
        self.completion = _Completion(self)

    def __len__(self) -> int:
        """Chats with a batch, or a text that may be a comment, in progress."""
        return len(self._open.keys() | self._comments.keys())

    def join(self, message: Message) -> bool:
        """Add ``message`` to the open batch it continues; False when it continues none."""
        now = time.monotonic()
        batches = self._open.get(message.chat.id, [])
        if batches:
            latest = batches[-1]
            previous = latest.messages[-1]
            if (
                latest.wants_more()
                and now - latest.last_arrival <= self.window
                and (
                    (latest.kind == "split text" and _continues(previous, message))
                    or (
                        latest.kind == "forwards"
                        and message.forward_origin is not None
                        and _same_sender(previous, message)
                    )
                )
            ):
                latest.add(message, now)
                return True
            if self._after_files(latest, message, now):
                return True
        if message.media_group_id is not None:
            # An album's batch, or forwards that began with the album's first part.
            for batch in batches:
                if batch.open and batch.media_group_id == message.media_group_id:
                    batch.add(message, now)
                    return True
        # Anything else in between means the text before it was not split, or the forward is over.
        for batch in batches:
            if batch.kind != "album":
                batch.close()
        return False

    def start(self, message: Message) -> Batch | None:
        """Open a batch with ``message`` first when it may be the start of one."""
        text = message.text or ""
        kind: BatchKind
        if message.forward_origin is not None:
            kind = "forwards"
        elif message.media_group_id is not None:
            kind = "album"
        elif _is_loose_file(message):
            kind = "files"
        elif _is_plain_text(message) and not is_command(message) and utf16_len(text) >= SPLIT_TEXT_MIN:
            kind = "split text"
        else:
            return None
        now = time.monotonic()
        batch = Batch(message.chat.id, kind, message.media_group_id, [message], now)
        if kind != "split text":
            batch.comment = self._take_comment(message, now)
        self._open.setdefault(message.chat.id, []).append(batch)
        return batch

    def _after_files(self, batch: Batch, message: Message, now: float) -> bool:
        """Add ``message`` to ``batch`` of an album or files when it goes with them: another file sent outside an
        album, or the first short text sent right after them."""
        previous = batch.messages[-1]
        if (
            batch.kind not in ("album", "files")
            or not batch.open
            or now - batch.last_arrival > self.window
            or not _same_sender(previous, message)
            or abs(message.date - previous.date) > SPLIT_MAX_DATE_GAP
        ):
            return False
        if batch.kind == "files" and _is_loose_file(message):
            batch.add(message, now)
            return True
        text = message.text or ""
        if (
            batch.after is None
            and _is_plain_text(message)
            and not is_command(message)
            and utf16_len(text) < SPLIT_TEXT_MIN
        ):
            batch.after = message
            batch.last_arrival = now
            batch.changed.set()
            logger.info("A text sent just after files joins them as their comment")
            return True
        return False

    def note_comment(self, message: Message) -> Comment | None:
        """A plain text, as a comment a forward may follow; None for any other message."""
        if not _is_plain_text(message) or is_command(message):
            return None
        comment = self._comments[message.chat.id] = Comment(message, time.monotonic())
        return comment

    def forget_comment(self, comment: Comment) -> None:
        chat_id = comment.message.chat.id
        if self._comments.get(chat_id) is comment:
            del self._comments[chat_id]

    def _take_comment(self, forward: Message, now: float) -> Comment | None:
        """The text sent just before ``forward`` (or files) by its sender, withdrawn from its own answer; None when
        there is none or its answer already shows."""
        comment = self._comments.get(forward.chat.id)
        if (
            comment is None
            or now - comment.arrival > self.window
            or comment.message.message_id > forward.message_id
            or not _same_sender(comment.message, forward)
            or abs(forward.date - comment.message.date) > SPLIT_MAX_DATE_GAP
            or not comment.withdraw()
        ):
            return None
        self.forget_comment(comment)
        logger.info("A text sent just before a forward or files joins them as their comment")
        return comment

    async def wait(self, batch: Batch) -> None:
        """Wait until ``batch`` is complete, then close it to new parts."""
        while batch.wants_more():
            remaining = batch.last_arrival + self.window - time.monotonic()
            if remaining <= 0:
                break
            batch.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch.changed.wait(), remaining)
        self.forget(batch)

    def forget(self, batch: Batch) -> None:
        batch.close()
        batches = self._open.get(batch.chat_id)
        if batches is None:
            return
        with contextlib.suppress(ValueError):
            batches.remove(batch)
        if not batches:
            del self._open[batch.chat_id]


Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class _Arrivals(BaseMiddleware):
    def __init__(self, gatherer: Gatherer) -> None:
        self.gatherer = gatherer

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if not isinstance(event, Update) or event.message is None:
            return await handler(event, data)
        message = event.message
        if self.gatherer.join(message):
            return None
        batch = self.gatherer.start(message)
        if batch is None:
            comment = self.gatherer.note_comment(message)
            if comment is None:
                return await handler(event, data)
            data[COMMENT_KEY] = comment
            try:
                return await handler(event, data)
            finally:
                self.gatherer.forget_comment(comment)
        data[BATCH_KEY] = batch
        try:
            return await handler(event, data)
        finally:
            # Normally closed in the chat's turn already; not when the flood guard or an error stopped it earlier.
            self.gatherer.forget(batch)


class _Completion(BaseMiddleware):
    def __init__(self, gatherer: Gatherer) -> None:
        self.gatherer = gatherer

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        comment: Comment | None = data.get(COMMENT_KEY)
        if comment is not None:
            comment.hand_over()  # on to the handler (``CommentGuard``), even if a forward took it
        batch: Batch | None = data.pop(BATCH_KEY, None)
        if batch is None or not isinstance(event, Update) or event.message is None:
            return await handler(event, data)
        await self.gatherer.wait(batch)
        messages = sorted(batch.messages, key=lambda m: m.message_id)
        if len(messages) > 1:
            logger.info("{} messages gathered into one request", len(messages))
        comment = batch.comment if batch.comment is not None and batch.comment.withdrawn else None
        if batch.kind in ("album", "files"):
            if comment is None and batch.after is None:
                data[ALBUM_KEY] = messages
                return await handler(event, data)
            # The texts were taken from their own answers: they are answered even if none of the files can be.
            before = comment.message.text if comment is not None else None
            album = with_comments(messages, before, batch.after.text if batch.after is not None else None)
            data[ALBUM_KEY] = album
            data[WITH_TEXTS_KEY] = True
            return await handler(event.model_copy(update={"message": album[0]}), data)
        if batch.kind == "forwards" and (len(messages) > 1 or comment is not None):
            return await self._forwards(handler, event, data, messages, comment.message if comment else None)
        if len(messages) == 1:
            return await handler(event, data)
        whole = event.message.model_copy(update={"text": join_text(messages), "entities": None})
        return await handler(event.model_copy(update={"message": whole}), data)

    async def _forwards(
        self, handler: Handler, event: Update, data: dict[str, Any], messages: list[Message], comment: Message | None
    ) -> Any:
        left_out = [m for m in messages if not _is_readable(m)]
        if len(left_out) == len(messages) and comment is None:
            # Nothing to answer: told what the bot reads once, as for one such message.
            return await handler(event, data)
        comment_text = comment.text if comment is not None else None
        if any(_has_files(m) for m in messages):
            album = as_album(messages, comment_text)
            data[ALBUM_KEY] = album
            data[WITH_TEXTS_KEY] = comment is not None or any(m.text for m in messages)
            return await handler(event.model_copy(update={"message": album[0]}), data)
        if left_out:
            # Told by the text handler once the quota is known to allow the request (``chat.on_forwards_in_part``).
            data[LEFT_OUT_KEY] = [unreadable_kind(m) for m in left_out]
        # The comment, when there is one, is the message the request stands for: the user typed it.
        base = comment if comment is not None else event.message
        assert base is not None
        whole = base.model_copy(update={"text": join_forwards(messages, comment_text), "entities": None})
        return await handler(event.model_copy(update={"message": whole}), data)
