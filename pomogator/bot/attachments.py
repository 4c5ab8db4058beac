"""The photos and files of one request (a message or an album) as model input.

Everything that can be refused without the bytes is refused first — parts that are not photos or documents,
files over Telegram's download limit, photos for a model that cannot see — so a refusal downloads nothing and
counts nothing. Then each file is downloaded, read in a worker thread (``pomogator.services.files``) and put into
one user message: the documents wrapped with their names, the caption as the question, then the images.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message

from pomogator.bot import files_texts
from pomogator.bot.replies import replied_text
from pomogator.errors import FileTooLarge, UnsupportedFile, VisionUnsupported
from pomogator.llm.catalog import Catalog, Model
from pomogator.llm.tokens import (
    CHARS_PER_TOKEN,
    FILE_BYTES_PER_TOKEN,
    IMAGE_TOKENS,
    estimate_content,
    estimate_text,
)
from pomogator.services.conversations import Content
from pomogator.services.files import (
    MAX_DOWNLOAD_BYTES,
    ExtractedDocument,
    check_size,
    document_prompt,
    extract_document,
    image_part,
    pdf_file_part,
)
from pomogator.services.quoting import with_quote

# Room kept in the model's context besides the documents: the caption and the wrappers around each file...
QUESTION_RESERVE_TOKENS = 500
PER_DOCUMENT_RESERVE_TOKENS = 150
# ...and a share for the conversation so far, so a long file does not push out all of it.
CONTEXT_SHARE = 0.2
MIN_DOCUMENT_CHARS = 1000

DOWNLOAD_TIMEOUT = 120


@dataclass(frozen=True, slots=True)
class Attachment:
    """One photo or document of a request, as Telegram describes it."""

    file_id: str
    name: str
    size: int | None
    mime_type: str | None
    photo: bool


@dataclass(frozen=True, slots=True)
class Prepared:
    """The user message for the model, and the documents that had to be cut to fit (to tell the user)."""

    content: Content
    cut: list[ExtractedDocument]


def attachment_of(message: Message) -> Attachment:
    """The file of a photo or document message; other kinds (an album may mix in videos) are refused."""
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
        return Attachment(largest.file_id, files_texts.PHOTO_NAME, largest.file_size, "image/jpeg", photo=True)
    # An animation carries a document too: it is refused as what it is.
    video = message.animation or message.video
    if video is not None or message.video_note is not None:
        raise UnsupportedFile((video.file_name if video else None) or "", "video")
    if message.audio is not None or message.voice is not None:
        raise UnsupportedFile((message.audio.file_name if message.audio else None) or "", "audio")
    if message.document is not None:
        document = message.document
        return Attachment(
            document.file_id, document.file_name or "file", document.file_size, document.mime_type, photo=False
        )
    raise UnsupportedFile("")


def question_of(messages: list[Message]) -> str | None:
    captions = [m.caption.strip() for m in messages if m.caption and m.caption.strip()]
    return "\n\n".join(captions) or None


def max_document_chars(model: Model, role: str | None, *, documents: int, images: int) -> int:
    """How many characters of each document go to ``model``: what its context holds after the answer, the role,
    the images, the question and a share for the conversation, split evenly between the documents."""
    tokens = model.context_length - model.max_output_tokens
    tokens -= estimate_text(role) if role else 0
    tokens -= images * IMAGE_TOKENS + QUESTION_RESERVE_TOKENS + documents * PER_DOCUMENT_RESERVE_TOKENS
    tokens = int(tokens * (1 - CONTEXT_SHARE))
    return max(MIN_DOCUMENT_CHARS, tokens * CHARS_PER_TOKEN // max(documents, 1))


class AttachmentRequest:
    """Photos and documents checked against the model before anything is downloaded."""

    def __init__(self, messages: list[Message], model: Model, role: str | None, catalog: Catalog) -> None:
        """Raises UnsupportedFile, FileTooLarge and VisionUnsupported."""
        self.attachments = [attachment_of(m) for m in messages]
        for attachment in self.attachments:
            check_size(attachment.size, MAX_DOWNLOAD_BYTES)
        photos = sum(1 for a in self.attachments if a.photo)
        if photos and not model.vision:
            raise VisionUnsupported(model.id, [m.id for m in catalog.vision_models()])
        self.question = question_of(messages)
        # A caption that replies to or quotes a message goes with that text, as a text message does.
        self.quoted = replied_text(messages[0])
        self.model = model
        documents = len(self.attachments) - photos
        self.max_chars = max_document_chars(model, role, documents=documents, images=photos)

    async def read(self, bot: Bot) -> Prepared:
        """Download and read every file. Raises the FileError subclasses of ``pomogator.services.files``."""
        documents: list[tuple[ExtractedDocument, bytes]] = []
        images: list[dict[str, Any]] = []
        for attachment in self.attachments:
            data = await download(bot, attachment)
            read = await asyncio.to_thread(read_file, attachment, data, self.max_chars)
            if isinstance(read, ExtractedDocument):
                documents.append((read, data))
            else:
                images.append(read)
        question = with_quote(self.question or files_texts.default_question(len(documents), len(images)), self.quoted)
        blocks = [document_prompt(doc, None, default_question="").rstrip() for doc, _ in documents]
        parts: list[dict[str, Any]] = [{"type": "text", "text": "\n\n".join([*blocks, question])}]
        scans = [(doc, data) for doc, data in documents if doc.needs_file_part]
        parts.extend(pdf_file_part(data, doc.filename) for doc, data in scans)
        # A scan goes whole as a file part: one bigger than the model's context is refused here, not by the model.
        budget = self.model.context_length - self.model.max_output_tokens
        if scans and estimate_content(parts) > budget:
            raise FileTooLarge(sum(len(data) for _, data in scans), budget * FILE_BYTES_PER_TOKEN * 3 // 4)
        return Prepared(content=[*parts, *images], cut=[doc for doc, _ in documents if doc.truncated])


async def download(bot: Bot, attachment: Attachment) -> bytes:
    """The file's bytes; getFile's "file is too big" (the size was not reported up front) is FileTooLarge."""
    try:
        buffer = await bot.download(attachment.file_id, timeout=DOWNLOAD_TIMEOUT)
    except TelegramBadRequest as exc:
        if "file is too big" in exc.message.lower():
            raise FileTooLarge(attachment.size or 0, MAX_DOWNLOAD_BYTES) from None
        raise
    if buffer is None:  # only when a destination is given
        raise RuntimeError("the download returned nothing")
    return buffer.read()


def read_file(attachment: Attachment, data: bytes, max_chars: int) -> ExtractedDocument | dict[str, Any]:
    """A document's text, or an image part for a photo or an image sent as a file (CPU-bound)."""
    if attachment.photo:
        return image_part(data, attachment.mime_type, filename=attachment.name)
    try:
        return extract_document(data, attachment.name, attachment.mime_type, max_chars)
    except UnsupportedFile as exc:
        if exc.kind != "image":
            raise
        return image_part(data, attachment.mime_type, filename=attachment.name)
