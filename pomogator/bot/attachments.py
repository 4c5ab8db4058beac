"""Telegram's side of a request's photos and files: its messages as ``Attachment``s, and their download.

What is done with them, from the refusals before any download to the model input, is
``pomogator.services.files.request``.
"""

from __future__ import annotations

import functools

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramServerError
from aiogram.types import Message
from aiohttp import ClientError
from loguru import logger

from pomogator.bot import files_texts
from pomogator.bot.replies import replied_text
from pomogator.errors import DownloadFailed, NamedFileTooLarge, UnsupportedFile
from pomogator.llm.catalog import Catalog, Model
from pomogator.services.files import MAX_DOWNLOAD_BYTES
from pomogator.services.files.request import Attachment, AttachmentRequest, Downloader

DOWNLOAD_TIMEOUT = 120


def unreadable_kind(message: Message) -> str:
    """What a message that is not a photo or a document is, for the notices that refuse it or leave it out:
    ``"video"`` (an animation and a video message too), ``"audio"`` (a voice message too) or ``"other"`` (a
    sticker, a poll, a location...)."""
    if message.animation is not None or message.video is not None or message.video_note is not None:
        return "video"
    if message.audio is not None or message.voice is not None:
        return "audio"
    return "other"


def attachment_of(message: Message) -> Attachment:
    """The file of a photo or document message; other kinds (an album may mix in videos, forwards anything) are
    refused."""
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
        return Attachment(largest.file_id, files_texts.PHOTO_NAME, largest.file_size, "image/jpeg", photo=True)
    # An animation carries a document too: it is refused as what it is.
    if message.document is not None and message.animation is None:
        document = message.document
        return Attachment(
            document.file_id,
            document.file_name or files_texts.DOCUMENT_NAME,
            document.file_size,
            document.mime_type,
            photo=False,
        )
    media = message.animation or message.video or message.audio
    raise UnsupportedFile((media.file_name if media else None) or "", unreadable_kind(message))


def question_of(messages: list[Message]) -> str | None:
    captions = [m.caption.strip() for m in messages if m.caption and m.caption.strip()]
    return "\n\n".join(captions) or None


def attachment_request(
    messages: list[Message], model: Model, role: str | None, catalog: Catalog, *, with_texts: bool = False
) -> AttachmentRequest:
    """The photos and files of ``messages`` (an album, files sent together, forwards), checked against ``model``
    before anything is downloaded (``AttachmentRequest`` raises its refusals). ``with_texts``: the first caption
    holds forwarded texts."""
    attachments: list[Attachment] = []
    skipped: list[UnsupportedFile] = []
    for message in messages:
        try:
            attachments.append(attachment_of(message))
        except UnsupportedFile as exc:
            skipped.append(exc)  # a video in an album of photos: the photos are still answered
    return AttachmentRequest(
        attachments,
        model,
        role,
        catalog,
        question=question_of(messages),
        quoted=replied_text(messages[0]),
        skipped=skipped,
        default_question=files_texts.default_question,
        with_texts=with_texts,
    )


def downloader(bot: Bot) -> Downloader:
    """``download`` with ``bot``: what ``AttachmentRequest.read`` fetches each file with."""
    return functools.partial(download, bot)


async def download(bot: Bot, attachment: Attachment) -> bytes:
    """The file's bytes; getFile's "file is too big" (the size was not reported up front) is FileTooLarge. Any other
    refusal of getFile ("wrong file_id or the file is temporarily unavailable", which Telegram answers now and then
    for a file it serves again later), a network error, a timeout or a failure on Telegram's side is DownloadFailed:
    the user is asked to send that file again, and the rest of an album is answered."""
    try:
        buffer = await bot.download(attachment.file_id, timeout=DOWNLOAD_TIMEOUT)
    except TelegramBadRequest as exc:
        if "file is too big" in exc.message.lower():
            raise NamedFileTooLarge(attachment.name, attachment.size or 0, MAX_DOWNLOAD_BYTES) from None
        logger.warning("Telegram refused to hand out a file: {}", exc.message)
        raise DownloadFailed(attachment.name) from exc
    except (TelegramNetworkError, TelegramServerError, ClientError, TimeoutError) as exc:
        # aiogram hands the file server's errors on as they are (aiohttp's, or a timeout): sending again may work.
        logger.warning("Downloading a file failed: {!r}", exc)
        raise DownloadFailed(attachment.name) from exc
    if buffer is None:  # only when a destination is given
        raise RuntimeError("the download returned nothing")
    return buffer.read()
