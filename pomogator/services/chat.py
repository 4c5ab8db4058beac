"""Chat: build the request from role, context and the new message, stream the answer, keep the context."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from loguru import logger

from pomogator.errors import LLMEmptyAnswer, LLMModerated, LLMNoRoomToAnswer, MessageTooLong, VisionUnsupported
from pomogator.llm.catalog import Catalog, Model
from pomogator.llm.client import Delta, Finished, LLMClient, Message, StreamEvent, TextComplete, Usage
from pomogator.llm.tokens import estimate_content
from pomogator.services.conversations import (
    Content,
    MemoryConversation,
    StoredConversation,
    Turn,
    encode_content,
    latest_turns_sql,
    turns_of,
)
from pomogator.services.files.images import MAX_REQUEST_MEDIA_BYTES, check_media_total, media_bytes
from pomogator.services.files.prompt import safe_filename
from pomogator.services.formatting import shows_nothing
from pomogator.services.formatting.fences import continued_code, open_fence
from pomogator.services.opening import MessageOpener
from pomogator.services.quota import RESERVE_SQL, QuotaService, Reservation
from pomogator.services.users import Account, Person
from pomogator.store.engine import ASYNC_COMMIT_CTE, Database, SharedConnectionSQLiteEngine, question_marks, raw
from pomogator.store.outage import outage_of
from pomogator.store.tables import LLMRequest
from pomogator.timeutil import utcnow

IMAGE_PLACEHOLDER = "[an image the current model cannot see]"

MEDIA_TURNS_KEPT = 4
"""How many of the latest turns with images or files (scanned PDFs), the new message included, go to the model with
them, while their bytes fit ``MAX_REQUEST_MEDIA_BYTES`` together. Older ones go with placeholders (and are stored
so): a long chat does not upload every picture ever sent."""
OLD_IMAGE_PLACEHOLDER = "[an image sent earlier; it is no longer attached]"
OLD_FILE_PLACEHOLDER = "[the file {name} sent earlier; it is no longer attached]"

INSERT_REQUEST = (
    "INSERT INTO llm_requests (telegram_id, model, prompt_tokens, completion_tokens, cost, status, created_at) "
)
# An answer's two turns and its usage row are stored together or not at all. PostgreSQL does it in one statement (a
# data-modifying CTE is atomic by itself: one round trip instead of BEGIN, two INSERTs and COMMIT); SQLite has no
# such statement and runs the INSERTs in one transaction on its shared connection (one hop to its worker thread).
#
# Nothing is stored for a person erased meanwhile (/delete_me while the answer streamed), and the turns are not
# stored when the context was cleared after the request started (``users.context_cleared_at``): the user was told
# the history is gone. The answer asked for is still counted (``llm_requests``) unless the person was erased. On
# PostgreSQL the statement holds the person's row (FOR KEY SHARE) while it writes: erasing the row, or clearing the
# context (which takes the row FOR UPDATE), waits for the statement, and its later DELETEs then see the new rows;
# a statement that had to wait for them reads the row as they left it (READ COMMITTED re-reads a locked row). On
# SQLite both sides are write transactions, which never overlap.
STORE_SQL = (
    f"WITH {ASYNC_COMMIT_CTE}, "
    "owner AS (SELECT context_cleared_at FROM users WHERE telegram_id = {} FOR KEY SHARE), "
    "turns AS (INSERT INTO dialog_messages (telegram_id, role, content, tokens, model, created_at) "
    "SELECT turn.* FROM (VALUES ({}::bigint, {}::text, {}::json, {}::int, {}::text, {}::timestamptz), "
    "({}, {}, {}, {}, {}, {})) AS turn, owner "
    "WHERE owner.context_cleared_at IS NULL OR owner.context_cleared_at < {}) "
    + INSERT_REQUEST
    + "SELECT {}, {}, {}, {}, {}, {}, {} FROM owner CROSS JOIN async_commit"
)

# On PostgreSQL the quota reservation and the context read share a round trip: the reservation (``RESERVE_SQL``)
# yields no row when the quota is used up, so neither does the whole statement; otherwise one row, with the context
# (``latest_turns_sql``).
RESERVE_AND_READ_SQL = (
    f"WITH {ASYNC_COMMIT_CTE}, reserved AS ("
    + RESERVE_SQL
    + "), context AS ("
    + latest_turns_sql("telegram_id = {}")
    + ") SELECT reserved.used, context.* FROM reserved CROSS JOIN async_commit CROSS JOIN context"
)

# SQLite's statements of ``STORE_SQL``, with the same conditions.
SQLITE_TURN_SQL = (
    "INSERT INTO dialog_messages (telegram_id, role, content, tokens, model, created_at) SELECT {}, {}, {}, {}, {}, {} "
    "WHERE EXISTS (SELECT 1 FROM users WHERE telegram_id = {} "
    "AND (context_cleared_at IS NULL OR context_cleared_at < {}))"
)

# The usage of a request whose turns are not stored (the terminal chat's).
REQUEST_SQL = INSERT_REQUEST + "VALUES ({}, {}, {}, {}, {}, {}, {})"
# A request's usage row, only while the person exists.
PERSON_REQUEST_SQL = (
    INSERT_REQUEST + "SELECT {}, {}, {}, {}, {}, {}, {} WHERE EXISTS (SELECT 1 FROM users WHERE telegram_id = {})"
)


@dataclass(slots=True)
class Dialog:
    """Everything one request needs: who asks (None for a local operator), which model, role, context, quota."""

    model: Model
    role: str | None
    conversation: StoredConversation | MemoryConversation
    telegram_id: int | None = None
    premium: bool = False
    charge_quota: bool = True


class SenderUndecided(Exception):
    """``ChatService.stream_sender_reply`` could not settle the sender's model in its round trip; nothing was taken.
    ``UserService.touch`` and ``stream_reply`` take it from there."""


# How many answers back a chain of continued code blocks is followed.
_FENCE_CHAIN = 4


def last_answer_open_fence(history: list[Turn]) -> str | None:
    """The opening line of the code block the context's last answer ended inside, if it did: as it was shown, so an
    answer that went on with its predecessor's block and closed it (``continued_code``) left none open."""
    if not history or history[-1].role != "assistant":
        return None
    answers: list[str] = []
    for turn in reversed(history[-2 * _FENCE_CHAIN :]):
        if turn.role != "assistant":
            continue
        content = turn.content
        if isinstance(content, bytes) and b"```" not in content and b"~~~" not in content:
            break  # the usual case, told without decoding the stored turn: no block was open after it
        decoded = turn.decoded()
        if not isinstance(decoded, str):
            break
        answers.append(decoded)
        if history[-1] is turn and open_fence(decoded) is None:
            return None
    fence = None
    for answer in reversed(answers):
        fence = open_fence(continued_code(answer, fence))
    return fence


@dataclass(slots=True)
class Reply:
    """Filled in while the answer streams; ``text`` is what was generated, ``stopped`` if the user cut it.

    ``complete`` turns true once the model has written all of ``text``: what follows (usage, storing) adds nothing
    to show. ``finish_reason`` is the model's (None when stopped); ``charged`` turns true once the answer was kept
    and its request counted against the quota (a stopped answer with no text is given back). ``unsaved`` answers
    could not be stored (the database was unavailable): they are not in the context of later messages.
    """

    text: str = ""
    complete: bool = False
    stopped: bool = False
    finish_reason: str | None = None
    charged: bool = False
    unsaved: bool = False
    usage: Usage = field(default_factory=Usage)
    reservation: Reservation | None = None
    account: Account | None = None
    # The person and the time the question and answer were stored under, in a stored conversation.
    stored: tuple[int, datetime] | None = None
    open_fence: str | None = None
    """The opening line of the code block the previous answer ended inside (cut off by the length limit): this answer
    may go on with it (``formatting.fences``). Set before the answer streams."""
    forgotten_files: tuple[str, ...] = ()
    """Names of the documents the model stopped seeing with this request (``forgotten_files``): set before the
    answer streams, so the person can be told once."""
    on_complete: Callable[[], object] | None = field(default=None, repr=False)
    """Called once ``complete`` turns true: from then on a stop no longer applies (the bot tells a late Stop so)."""

    def mark_complete(self) -> None:
        if not self.complete:
            self.complete = True
            if self.on_complete is not None:
                self.on_complete()

    @property
    def cut_off(self) -> bool:
        """The model ran into its output limit: the answer ends mid-way."""
        return self.finish_reason == "length"

    @property
    def filtered(self) -> bool:
        """The provider's content filter stopped the answer part-way."""
        return self.finish_reason == "content_filter"

    @property
    def blank(self) -> bool:
        """Nothing but whitespace: not an answer (providers refuse such a turn in the context)."""
        return not self.text.strip()

    def shows_nothing(self) -> bool:
        """Blank, or Markdown that renders to nothing (only an empty code fence, ``&nbsp;``): the person sees no
        answer, so it is not one either. Renders the text when it might be so."""
        return self.blank or shows_nothing(self.text)


def has_images(content: Content) -> bool:
    return isinstance(content, list) and any(p.get("type") == "image_url" for p in content)


def without_images(content: Content) -> Content:
    """``content`` for a model without vision: images get a placeholder, and so do files (scanned PDFs, sent when
    a model that sees was chosen), which would be read by the provider's paid recognition with every question."""
    if isinstance(content, str) or not has_media(content):
        return content
    return [
        {"type": "text", "text": IMAGE_PLACEHOLDER} if part.get("type") == "image_url" else _media_placeholder(part)
        for part in content
    ]


def has_media(content: Content) -> bool:
    """Whether ``content`` carries images or files (the parts that cost megabytes to send again)."""
    return isinstance(content, list) and any(p.get("type") in ("image_url", "file") for p in content)


def without_media(content: Content) -> Content:
    """``content`` with each image and file replaced by a short note saying it was sent earlier."""
    if isinstance(content, str) or not has_media(content):
        return content
    return [_media_placeholder(part) for part in content]


def _media_placeholder(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image_url":
        return {"type": "text", "text": OLD_IMAGE_PLACEHOLDER}
    if part.get("type") == "file":
        name = str(part.get("file", {}).get("filename") or "file")
        return {"type": "text", "text": OLD_FILE_PLACEHOLDER.format(name=safe_filename(name))}
    return part


def may_hold_media(turn: Turn) -> bool:
    """Whether ``turn`` may carry images or files, known without decoding a stored turn: the key of a media part
    (``"image_url"``, ``"file"``) appears in stored JSON only as a key, since quotes inside strings are escaped.
    A turn whose media were replaced by placeholders is not decoded again for every request."""
    content = turn.content
    if isinstance(content, bytes):
        return content[:1] != b'"' and (b'"image_url"' in content or b'"file"' in content)
    return has_media(content)


def with_recent_media(
    history: list[Turn], content: Content, keep: int = MEDIA_TURNS_KEPT, budget: int = MAX_REQUEST_MEDIA_BYTES
) -> list[Turn]:
    """``history`` in which only the latest ``keep`` turns with images or files keep them, newest first, while
    their bytes fit ``budget`` beside the new message's (``content``, counted first); older ones get placeholders
    and the token estimate of what is left. Turns that do not change are the same objects."""
    new_media = has_media(content)
    left = keep - (1 if new_media else 0)
    room = budget - (media_bytes(content) if new_media and isinstance(content, list) else 0)
    kept: list[Turn] = []
    for turn in reversed(history):
        decoded = turn.decoded() if may_hold_media(turn) else None
        if decoded is not None and isinstance(decoded, list) and has_media(decoded):
            size = media_bytes(decoded)
            if left > 0 and size <= room:
                left -= 1
                room -= size
            else:
                # Once one does not fit, older ones are not sent either: the model sees the latest media, in order.
                left = 0
                stripped = without_media(decoded)
                turn = replace(turn, content=stripped, tokens=estimate_content(stripped))
        kept.append(turn)
    kept.reverse()
    return kept


def build_messages(dialog: Dialog, history: list[Turn], content: Content) -> list[Message]:
    """System role + as much recent context as fits + the new message; raises MessageTooLong when the message and
    the role alone do not fit.
    Only the latest turns with images or files send them again (``with_recent_media``)."""
    return fit_messages(dialog, with_recent_media(history, content), content)[0]


def fit_messages(dialog: Dialog, history: list[Turn], content: Content) -> tuple[list[Message], int]:
    """``build_messages`` of a ``history`` whose old media are already dropped, and how many of its oldest turns
    did not fit."""
    model = dialog.model
    budget = model.input_tokens
    head: list[Message] = []
    if dialog.role:
        head.append({"role": "system", "content": dialog.role})
    fixed = sum(estimate_content(m["content"]) for m in head) + estimate_content(content)
    if fixed > budget:
        raise MessageTooLong(model.id, fixed, budget)
    dropped = first_fitting(history, budget - fixed)
    kept: list[Message] = []
    for turn in history[dropped:]:
        sent = turn.for_request() if model.vision or not may_hold_media(turn) else without_images(turn.decoded())
        kept.append({"role": turn.role, "content": sent})
    # A context that starts with the model's own answer confuses some providers.
    while kept and kept[0]["role"] == "assistant":
        kept.pop(0)
    return [*head, *kept, {"role": "user", "content": content}], dropped


def first_fitting(history: list[Turn], room: int) -> int:
    """The index of the oldest turn of ``history`` sent in ``room`` tokens: the latest turns that fit, no gaps."""
    start = len(history)
    for turn in reversed(history):
        if turn.tokens > room:
            break
        room -= turn.tokens
        start -= 1
    return start


# The opening tag of a document's extracted text (``files.prompt.document_prompt``); a scan's tag, which holds no
# text (``attached="true"``), does not match: its file part is what the model reads.
_DOCUMENT_TAG = re.compile(r'<file name="([^"]*)">')


def document_names(content: Content) -> list[str]:
    """Names of the documents ``content`` carries: extracted text in a ``<file>`` wrapper, or a file part."""
    names: list[str] = []
    parts: list[dict[str, Any]] = [{"type": "text", "text": content}] if isinstance(content, str) else content
    for part in parts:
        if part.get("type") == "text":
            names.extend(html.unescape(name) for name in _DOCUMENT_TAG.findall(str(part.get("text", ""))))
        elif part.get("type") == "file":
            names.append(str(part.get("file", {}).get("filename") or "file"))
    return list(dict.fromkeys(names))


def _may_hold_document(turn: Turn) -> bool:
    """Whether ``turn`` may carry a document, known without decoding a stored turn (quotes are escaped in JSON)."""
    content = turn.content
    if isinstance(content, bytes):
        return b'<file name=\\"' in content or may_hold_media(turn)
    return True


def forgotten_files(history: list[Turn], recent: list[Turn], dropped: int, dropped_before: int) -> tuple[str, ...]:
    """Names of the documents the model stops seeing with this request, so the person is told once.

    ``recent`` is ``history`` after ``with_recent_media``; ``dropped`` is how many of its oldest turns do not fit now
    (``fit_messages``), ``dropped_before`` how many did not fit the previous request (``previously_dropped``). A
    document counts when its turn fitted then and does not now, or when its file part (a scan) was just replaced by
    a note: the turn is stored so, and is not found again.
    """
    names: list[str] = []
    for old, new in zip(history[dropped_before:dropped], recent[dropped_before:dropped], strict=True):
        if old.role == "user" and _may_hold_document(old):
            names.extend(document_names(new.decoded()))
    for old, new in zip(history, recent, strict=True):
        if new is not old and old.role == "user":
            names.extend(n for n in document_names(old.decoded()) if n not in document_names(new.decoded()))
    return tuple(dict.fromkeys(names))


def previously_dropped(dialog: Dialog, recent: list[Turn], catalog: Catalog) -> int:
    """How many of the oldest turns of ``recent`` did not fit the previous request: the question and answer that
    end it, asked of the model that answered (the person may have switched since) with today's role. All of them
    when the context does not end with a question and its answer (cleared, or only just begun)."""
    if len(recent) < 2 or recent[-2].role != "user" or recent[-1].role != "assistant":
        return len(recent)
    model = catalog.find(recent[-1].model) or dialog.model
    fixed = (estimate_content(dialog.role) if dialog.role else 0) + recent[-2].tokens
    return first_fitting(recent[:-2], model.input_tokens - fixed)


class ChatService:
    def __init__(self, database: Database, llm: LLMClient, quota: QuotaService, catalog: Catalog) -> None:
        self.database = database
        self.llm = llm
        self.quota = quota
        self.catalog = catalog
        self._opener = None if database.is_sqlite else MessageOpener(catalog, quota)

    def dialog_for(self, account: Account) -> Dialog:
        return Dialog(
            model=account.model,
            role=account.role,
            conversation=StoredConversation(account.telegram_id),
            telegram_id=account.telegram_id,
            premium=account.premium,
        )

    def local_dialog(self, model: Model, role: str | None = None) -> Dialog:
        return Dialog(model=model, role=role, conversation=MemoryConversation(), charge_quota=False)

    async def ensure_can_ask(self, account: Account) -> None:
        """Raise QuotaExceeded (or PremiumRequired) when ``account`` has no request of its model left today; takes
        nothing. For work refused before it starts (downloading and reading files, telling what was left out)."""
        await self.quota.ensure_left(account.telegram_id, account.model, account.premium)

    async def clear_context(self, telegram_id: int) -> int:
        return await StoredConversation(telegram_id).clear()

    async def stream_reply(
        self,
        dialog: Dialog,
        content: Content,
        *,
        stop: asyncio.Event | None = None,
        reply: Reply | None = None,
    ) -> AsyncGenerator[str, None]:
        """Yield the answer's text pieces as they arrive.

        Raises VisionUnsupported and ImagesTooLarge (before anything is taken), QuotaExceeded (before any LLM call),
        MessageTooLong (no LLM call) and LLMError subclasses, LLMEmptyAnswer for an answer with nothing to show
        included (the reserved request is refunded; a refund that fails is tried again later and never replaces the
        error). Setting ``stop`` ends the stream early: what was generated is kept, stored and counted as one request
        (nothing but whitespace is given back). Both turns are stored only when the answer completes or is stopped,
        and only while the person exists and has not cleared the context since the request started.
        """
        reply = reply if reply is not None else Reply()
        model = dialog.model
        if has_images(content) and not model.vision:
            raise VisionUnsupported(model.id, [m.id for m in self.catalog.vision_models()])
        if isinstance(content, list):
            check_media_total(content)
        started = utcnow()
        history: list[Turn] | None = None
        if dialog.charge_quota and dialog.telegram_id is not None:
            if not self.database.is_sqlite and isinstance(dialog.conversation, StoredConversation):
                reply.reservation, history = await self.reserve_and_read(dialog.telegram_id, model, dialog.premium)
            else:
                reply.reservation = await self.quota.reserve(dialog.telegram_id, model, dialog.premium)
        # Closed with this generator: a consumer that leaves early gets its refund at once.
        async with contextlib.aclosing(self._answer(dialog, content, history, stop, reply, started)) as pieces:
            async for piece in pieces:
                yield piece

    @property
    def opens_in_one_trip(self) -> bool:
        """Whether ``stream_sender_reply`` can be used (PostgreSQL)."""
        return self._opener is not None

    async def stream_sender_reply(
        self, person: Person, text: str, *, stop: asyncio.Event | None = None, reply: Reply
    ) -> AsyncGenerator[str, None]:
        """``stream_reply`` for a text from ``person`` whose account was not read yet: the sender's upsert, the
        quota reservation and the context read are one round trip (``opens_in_one_trip``). ``reply.account`` is
        the sender's account once known.

        Raises SenderUndecided before taking anything when that round trip could not decide the model
        (``UserService.touch`` then resets it and ``stream_reply`` goes on), QuotaExceeded, and what
        ``stream_reply`` raises.
        """
        if self._opener is None:
            raise SenderUndecided()
        started = utcnow()
        opened = await self._opener.open(person)
        if opened is None:
            raise SenderUndecided()
        account = reply.account = opened.account
        reply.reservation = self.quota.reserved(
            account.telegram_id, account.model, opened.day, opened.limit, opened.used
        )
        async with contextlib.aclosing(
            self._answer(self.dialog_for(account), text, opened.history, stop, reply, started)
        ) as pieces:
            async for piece in pieces:
                yield piece

    async def _answer(
        self,
        dialog: Dialog,
        content: Content,
        history: list[Turn] | None,
        stop: asyncio.Event | None,
        reply: Reply,
        started: datetime,
    ) -> AsyncGenerator[str, None]:
        """Ask the model with the request taken (``reply.reservation``) and keep the answer; refunds on failure.
        ``started`` is when the request began: a context cleared since then does not get the answer's turns."""
        model = dialog.model
        try:
            if history is None:
                history = await dialog.conversation.history()
            reply.open_fence = last_answer_open_fence(history)
            recent = with_recent_media(history, content)
            messages, dropped = fit_messages(dialog, recent, content)
            reply.forgotten_files = forgotten_files(
                history, recent, dropped, previously_dropped(dialog, recent, self.catalog)
            )
            finished = False
            async for event in _until_stopped(self.llm.stream(model.id, messages, model.max_output_tokens), stop):
                if isinstance(event, Delta):
                    reply.text += event.text
                    yield event.text
                elif isinstance(event, TextComplete):
                    reply.mark_complete()
                elif isinstance(event, Finished):
                    reply.mark_complete()
                    reply.usage = event.usage
                    reply.finish_reason = event.finish_reason
                    finished = True
            if finished and reply.shows_nothing():
                # Not an answer: the person sees none, so it costs nothing; stored, the turn would go out with every
                # later request (providers refuse a blank one).
                detail = f"empty answer, finish_reason={reply.finish_reason}"
                if reply.filtered:
                    raise LLMModerated(detail)
                # A reasoning model can spend its whole answer limit thinking: trying again gives the same.
                raise LLMNoRoomToAnswer(detail) if reply.cut_off else LLMEmptyAnswer(detail)
        except BaseException as exc:
            # Failed, cancelled or abandoned by the consumer: the request costs the person nothing.
            if reply.reservation is not None:
                await self.quota.give_back(reply.reservation)
            if reply.text and isinstance(exc, GeneratorExit | asyncio.CancelledError):
                # Cut off mid-way (Ctrl-C in the terminal chat, a shutdown): the model was paid for what it wrote.
                await asyncio.shield(_record_usage(_request_row(dialog, reply, "stopped")))
            raise
        reply.stopped = not finished
        if reply.stopped and reply.shows_nothing():
            if reply.reservation is not None:
                await self.quota.give_back(reply.reservation)
            return
        storing = asyncio.ensure_future(self._store(dialog, content, reply, started))
        try:
            await asyncio.shield(storing)
        except asyncio.CancelledError:
            # Cut off while it was kept (a shutdown): the answer reaches nobody, so it costs nothing and leaves the
            # context. The statement is let finish, so the usage record stays and the turns it stored are known.
            with contextlib.suppress(Exception):
                await storing
            reply.charged = reply.reservation is not None
            await asyncio.shield(self.take_back(reply))
            raise
        except Exception as exc:
            outage = outage_of(exc)
            if outage is None:
                # Not kept, for a reason other than an outage: the person is told of a failure, which costs nothing.
                if reply.reservation is not None:
                    await self.quota.give_back(reply.reservation)
                raise
            # The answer was generated and the request taken: the user still gets it, told it is not in the context.
            logger.warning("Answer not stored, the database is unavailable: {}", outage.detail)
            reply.unsaved = True
        reply.charged = reply.reservation is not None
        if not reply.unsaved and isinstance(dialog.conversation, StoredConversation):
            await self._forget_old_media(dialog.conversation, history, recent)

    async def _forget_old_media(
        self, conversation: StoredConversation, history: list[Turn], recent: list[Turn]
    ) -> None:
        """Store the turns whose images and files are no longer sent (``with_recent_media``) without them: every
        later request reads and decodes the stored context. Only an optimisation: the answer is already kept."""
        stale = [new for old, new in zip(history, recent, strict=True) if new is not old]
        if not stale:
            return
        try:
            await conversation.rewrite(stale)
        except Exception:
            logger.opt(exception=True).warning("Could not drop old images from the stored context")

    async def take_back(self, reply: Reply) -> None:
        """An answer that never reached the person (Telegram held it back or could not be reached, a shutdown cut it
        off): its request is given back (later, if the database is unreachable now: ``QuotaService.give_back``) and
        its question and answer leave the context, so that asking again does not find them there. What the model
        was paid for stays in the usage records."""
        if reply.charged and reply.reservation is not None:
            reply.charged = False
            await self.quota.give_back(reply.reservation)
        if reply.stored is not None:
            telegram_id, created_at = reply.stored
            await StoredConversation(telegram_id).forget_stored_at(created_at)
            reply.stored = None

    async def reserve_and_read(self, telegram_id: int, model: Model, premium: bool) -> tuple[Reservation, list[Turn]]:
        """PostgreSQL: take the request from the quota and read the context in one round trip."""
        reservation, rows = await self.quota.reserve_by(RESERVE_AND_READ_SQL, telegram_id, model, premium, telegram_id)
        return reservation, turns_of(rows[0])

    async def _store(self, dialog: Dialog, content: Content, reply: Reply, started: datetime) -> None:
        turns = [
            Turn("user", content, estimate_content(content), dialog.model.id),
            Turn("assistant", reply.text, estimate_content(reply.text), dialog.model.id),
        ]
        status = "stopped" if reply.stopped else "ok"
        request = _request_row(dialog, reply, status)
        person, now = dialog.telegram_id, request[-1]
        if isinstance(dialog.conversation, MemoryConversation):
            await dialog.conversation.append(turns)
            await _record_usage(request)
            return
        rows = [(person, turn.role, encode_content(turn.content), turn.tokens, turn.model, now) for turn in turns]
        if not self.database.is_sqlite:
            await raw(LLMRequest, STORE_SQL, person, *(v for row in rows for v in row), started, *request)
        else:
            await self._store_on_sqlite(
                [
                    *((SQLITE_TURN_SQL, (*row, person, started)) for row in rows),
                    (PERSON_REQUEST_SQL, (*request, person)),
                ]
            )
        reply.stored = (dialog.conversation.telegram_id, now)

    async def _store_on_sqlite(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run ``statements`` (``{}`` placeholders) in one write transaction; on the shared connection it commits
        without waiting for the disk, as ``STORE_SQL`` does on PostgreSQL."""
        engine = self.database.engine
        if isinstance(engine, SharedConnectionSQLiteEngine):
            statements = [(question_marks(sql), args) for sql, args in statements]
            await engine.execute_atomically(statements, lazy_commit=True)
            return
        async with self.database.transaction():
            for sql, args in statements:
                await raw(LLMRequest, sql, *args)


def _request_row(dialog: Dialog, reply: Reply, status: str) -> tuple[Any, ...]:
    """The ``llm_requests`` row of ``reply``, in ``INSERT_REQUEST``'s order."""
    usage = reply.usage
    return (
        dialog.telegram_id,
        dialog.model.id,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cost,
        status,
        utcnow(),
    )


async def _record_usage(request: tuple[Any, ...]) -> None:
    """Keep the usage of a request whose turns are not stored (the terminal chat's, or one cut off mid-way): it is
    paid for like any other. A person's only while they exist (an erasure may be what cut it off). The answer is
    shown already, so a database that cannot take the row costs only the row."""
    person = request[0]
    try:
        if person is None:
            await raw(LLMRequest, REQUEST_SQL, *request)
        else:
            await raw(LLMRequest, PERSON_REQUEST_SQL, *request, person)
    except Exception as exc:
        outage = outage_of(exc)
        if outage is None:
            raise
        logger.warning("The request's usage was not recorded, the database is unavailable: {}", outage.detail)


async def _until_stopped(events: AsyncIterator[StreamEvent], stop: asyncio.Event | None) -> AsyncIterator[StreamEvent]:
    """Pass events through until the stream ends or ``stop`` is set, whichever comes first.

    Events are read in the consumer's own task, so events that have already arrived pass without a trip through the
    event loop (an answer that arrives at once is read at once). When ``stop`` is set while a read waits, that read
    is cancelled; a cancellation of the task from elsewhere still propagates. Once the text is whole
    (``TextComplete``) ``stop`` is no longer watched: only the usage and the stream's end follow, and stopping then
    would lose the usage and mark a whole answer stopped.
    """
    iterator = aiter(events)
    task = asyncio.current_task()
    state = {"reading": False, "stopped": False}

    def on_stop(_: object) -> None:
        state["stopped"] = True
        if state["reading"] and task is not None:
            task.cancel()

    watcher = asyncio.ensure_future(stop.wait()) if stop is not None else None
    if watcher is not None:
        watcher.add_done_callback(on_stop)
    try:
        while not state["stopped"]:
            state["reading"] = True
            try:
                event = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                # Our own cancellation (stop pressed during the read) ends the stream; any other goes on.
                if state["stopped"] and task is not None and task.uncancel() == 0:
                    return
                raise
            finally:
                state["reading"] = False
            yield event
            if isinstance(event, TextComplete) and watcher is not None:
                watcher.remove_done_callback(on_stop)
                state["stopped"] = False
    finally:
        if watcher is not None:
            watcher.remove_done_callback(on_stop)
            watcher.cancel()
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
