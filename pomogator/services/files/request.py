"""The photos and files of one request (a message, an album, messages forwarded together) as model input.

Everything that can be refused without the bytes is refused first (``AttachmentRequest``): more files than an
album holds, files over Telegram's download limit, images for a model that cannot see; so a refused file is never
downloaded and a refusal counts nothing. Of several parts such a part is only left out with a notice while other
parts, or forwarded texts, can be answered; the request is refused only when nothing is left (too many files always
are). Then each file is downloaded (by the frontend's ``download``) and read: documents in a child process with time
and memory limits (``read_document``), and images so too (``read_image``: their decoders parse what anyone may
send, away from the bot's secrets); a file of an album
that cannot be read or downloaded is left out with a notice in the same way. They become one user message: the
documents wrapped with their names, the question, then the scans, the pictures of the documents (a DOCX's, for a
model that sees) and the images. The documents share what the model's context and ``MAX_DOCUMENTS_CHARS`` leave
them (``shares``), and the media the request's byte budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pomogator.errors import (
    FileError,
    FileTooLarge,
    ImagesTooLarge,
    NamedFileTooLarge,
    ScanTooLarge,
    ScanTooLong,
    TooManyFiles,
    UnsupportedFile,
    VisionUnsupported,
)
from pomogator.llm.catalog import Catalog, Model
from pomogator.llm.tokens import (
    CHARS_PER_TOKEN,
    IMAGE_TOKENS,
    SCAN_PAGE_TOKENS,
    estimate_content,
    estimate_text,
    remember_pdf_pages,
)
from pomogator.services.conversations import Content
from pomogator.services.files import (
    DEFAULT_QUESTION,
    MAX_DOCUMENTS_CHARS,
    MAX_DOWNLOAD_BYTES,
    MAX_REQUEST_MEDIA_BYTES,
    MAX_SCAN_BYTES,
    ExtractedDocument,
    check_media_total,
    cut_further,
    declared_kind,
    document_prompt,
    fit_pictures,
    in_image_workers,
    media_bytes,
    pdf_file_part,
    read_document,
    read_image,
    sniff_signature,
)
from pomogator.services.quoting import with_quote

# Room kept in the model's context besides the documents: the caption and the wrappers around each file...
QUESTION_RESERVE_TOKENS = 500
PER_DOCUMENT_RESERVE_TOKENS = 150
# ...and a share for the conversation so far, so a long file does not push out all of it.
CONTEXT_SHARE = 0.2
MIN_DOCUMENT_CHARS = 1000

MAX_ATTACHMENTS = 10
"""Photos and files of one request: as many as an album holds. Messages forwarded together may carry more; each is
downloaded and read, and goes to the model with every follow-up question."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """One photo or document of a request, as Telegram describes it."""

    file_id: str
    name: str
    size: int | None
    mime_type: str | None
    photo: bool

    @property
    def image(self) -> bool:
        """A photo, or a document that says it is an image (by its MIME type or, failing that, its name)."""
        return self.photo or declared_kind(self.name, self.mime_type) == "image"


Downloader = Callable[[Attachment], Awaitable[bytes]]
"""Fetches an attachment's bytes; raises DownloadFailed, or FileTooLarge when the file turns out too large."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """The user message for the model, the documents that had to be cut to fit, the kinds of the parts that were
    left out (``unreadable_kind``, or ``"vision"``: images the model cannot see) and why the files that could not
    be read, or were too large to be, were not (to tell the user)."""

    content: Content
    cut: list[ExtractedDocument]
    skipped: list[str | None] = field(default_factory=list)
    unreadable: list[FileError] = field(default_factory=list)
    without_scans: list[tuple[ExtractedDocument, FileError]] = field(default_factory=list)
    """PDFs with scanned pages that go as their text alone, and why the file could not go (to tell the user)."""
    without_pictures: list[ExtractedDocument] = field(default_factory=list)
    """Documents whose pictures, or some of them, do not go to the model (``pictures_left_out``: to tell the user)."""


def document_tokens(model: Model, role: str | None, *, documents: int, images: int) -> int:
    """How many tokens the documents of a request may take together in ``model``: what its context holds after the
    answer, the role, the images, the question and the wrappers, and a share for the conversation."""
    tokens = model.input_tokens
    tokens -= estimate_text(role) if role else 0
    tokens -= images * IMAGE_TOKENS + QUESTION_RESERVE_TOKENS + documents * PER_DOCUMENT_RESERVE_TOKENS
    return max(int(tokens * (1 - CONTEXT_SHARE)), 0)


def max_document_chars(model: Model, role: str | None, *, documents: int, images: int) -> int:
    """How many characters of a document are read: ``document_tokens`` of prose, and at most
    ``MAX_DOCUMENTS_CHARS``. Each document of a request may take it all; they share it once read (``shares``), and
    denser text (numbers) is cut further (``fit_tokens``)."""
    chars = document_tokens(model, role, documents=documents, images=images) * CHARS_PER_TOKEN
    return max(MIN_DOCUMENT_CHARS, min(chars, MAX_DOCUMENTS_CHARS))


def shares(needs: list[int], budget: int) -> list[int]:
    """``budget`` shared by what each one ``needs``: those that need less than an even share of what is left take
    what they need, and the rest is split evenly between the others."""
    given = [0] * len(needs)
    left = budget
    for position, index in enumerate(sorted(range(len(needs)), key=needs.__getitem__)):
        given[index] = min(needs[index], left // (len(needs) - position))
        left -= given[index]
    return given


def within_cap(doc: ExtractedDocument, max_chars: int) -> ExtractedDocument:
    """``doc`` cut to ``max_chars``, its share of ``MAX_DOCUMENTS_CHARS``, when its text is longer."""
    if len(doc.text) <= max_chars:
        return doc
    return cut_further(doc, max(MIN_DOCUMENT_CHARS, max_chars), "cap")


def fit_tokens(doc: ExtractedDocument, max_tokens: int) -> ExtractedDocument:
    """``doc`` cut further when its text takes more than ``max_tokens``: a numeric CSV or JSON export takes nearly
    twice the tokens of prose of the same length (``estimate_text``)."""
    tokens = estimate_text(doc.text)
    if tokens <= max_tokens:
        return doc
    return cut_further(doc, max(MIN_DOCUMENT_CHARS, len(doc.text) * max_tokens // tokens), "context")


def check_size(attachment: Attachment, limit: int) -> None:
    """Raise NamedFileTooLarge when Telegram says the file is over ``limit``; an unknown size passes."""
    if attachment.size is not None and attachment.size > limit:
        raise NamedFileTooLarge(attachment.name, attachment.size, limit)


class AttachmentRequest:
    """Photos and documents checked against the model before anything is downloaded."""

    def __init__(
        self,
        attachments: list[Attachment],
        model: Model,
        role: str | None,
        catalog: Catalog,
        *,
        question: str | None = None,
        quoted: str | None = None,
        skipped: list[UnsupportedFile] | None = None,
        default_question: Callable[[int, int], str] = lambda documents, images: DEFAULT_QUESTION,
        with_texts: bool = False,
    ) -> None:
        """Raises TooManyFiles, FileTooLarge, VisionUnsupported and the first of ``skipped`` (the parts that are no
        photo or document: a video in an album). Of several parts, one refused here (a file over the download limit,
        an image for a model that cannot see, one of ``skipped``) is left out with a notice while others can be
        answered, as one that cannot be read is (``read``): the refusal is raised only when nothing is left.
        ``question`` is the caption, ``quoted`` the text it replies to or quotes; ``default_question(documents,
        images)`` is asked without a caption. ``with_texts``: the caption holds forwarded texts, which can be
        answered alone."""
        self.with_texts = with_texts
        self.attachments = list(attachments)
        self.skipped = list(skipped or [])
        self.refused: list[FileError] = []
        """Files too large, left out before the download: told with those that cannot be read."""
        self.unseen_images = 0
        if len(self.attachments) > MAX_ATTACHMENTS:
            raise TooManyFiles(len(self.attachments), MAX_ATTACHMENTS)
        for attachment in list(self.attachments):
            try:
                check_size(attachment, MAX_DOWNLOAD_BYTES)
            except FileTooLarge as exc:
                self.refused.append(exc)
                self.attachments.remove(attachment)
        images = sum(1 for a in self.attachments if a.image)
        vision_refusal = None
        if images and not model.vision:
            vision_refusal = VisionUnsupported(model.id, [m.id for m in catalog.vision_models()])
            self.attachments = [a for a in self.attachments if not a.image]
            self.unseen_images, images = images, 0
        if not self.attachments and not with_texts:
            raise (self.refused[0] if self.refused else vision_refusal or self.skipped[0])
        self.question = question
        # A caption that replies to or quotes a message goes with that text, as a text message does.
        self.quoted = quoted
        self.default_question = default_question
        self.model = model
        self.role_tokens = estimate_content(role) if role else 0
        documents = len(self.attachments) - images
        self.document_tokens = document_tokens(model, role, documents=documents, images=images)
        self.max_chars = max_document_chars(model, role, documents=documents, images=images)
        # Reading a document stops at max_chars: when that is the cap, not the context, the cap is what cut it.
        self.capped = self.max_chars == MAX_DOCUMENTS_CHARS

    @property
    def skipped_kinds(self) -> list[str | None]:
        return [exc.kind for exc in self.skipped] + (["vision"] if self.unseen_images else [])

    async def read(self, download: Downloader) -> Prepared:
        """Download every file (``download``: the frontend's) and read it. Raises the FileError subclasses of
        ``pomogator.services.files`` (among them FileTooComplex for a file that hit the reader's limits),
        DownloadFailed, ScanTooLarge and ScanTooLong, and UnsupportedFile for a scan sent to a model that cannot see
        (``without_unsent_scans``). A PDF with a text layer that is too long to go whole goes as its text
        (``without_scans``), as one too large or for a model that cannot see does. A file of an album that cannot be
        read (damaged, protected, empty, not what its name says, not downloaded) is left out while others can be, or
        while forwarded texts can be answered: ``unreadable``."""
        documents: list[tuple[ExtractedDocument, bytes]] = []
        images: list[dict[str, Any]] = []
        unreadable: list[FileError] = list(self.refused)
        failed = 0
        # What the images, the scans and the documents' pictures read so far left of the request's media budget. A
        # document's pictures come back no bigger than that, so this process never holds more of them than one
        # request may send, however many documents come; they are fitted exactly once all is read.
        media_room = MAX_REQUEST_MEDIA_BYTES
        # Photos and image files are fetched and decoded at once, each in a child of its own (``read_image``), while
        # the documents are read in turn: an album of photos waits for its slowest one, not for all of them in a row.
        early = {
            index: asyncio.ensure_future(self._fetch(download, attachment, MAX_REQUEST_MEDIA_BYTES))
            for index, attachment in enumerate(self.attachments)
            if attachment.image
        }
        try:
            for index, attachment in enumerate(self.attachments):
                try:
                    job = early.get(index)
                    if job is not None:
                        data, read = await job
                    else:
                        data, read = await self._fetch(download, attachment, max(media_room, 0))
                except FileError as exc:
                    if isinstance(exc, FileTooLarge) and not isinstance(exc, NamedFileTooLarge | ImagesTooLarge):
                        exc = NamedFileTooLarge(attachment.name, exc.size, exc.limit)
                    failed += 1
                    if not self.with_texts and failed == len(self.attachments):
                        raise (unreadable[0] if unreadable else exc) from None
                    unreadable.append(exc)
                    continue
                if isinstance(read, ExtractedDocument):
                    if self.capped and read.stopped_by == "context":
                        read = replace(read, stopped_by="cap")
                    if read.needs_file_part and len(data) <= min(MAX_SCAN_BYTES, media_room):
                        media_room -= len(data)
                    media_room -= media_bytes(read.pictures)
                    # Only a scan goes as its bytes: those of other documents are not kept once read.
                    documents.append((read, data if read.needs_file_part else b""))
                else:
                    media_room -= media_bytes([read])
                    images.append(read)
        finally:
            # Those not awaited (the request was refused, or cancelled): their children are ended.
            for job in early.values():
                job.cancel()
            await asyncio.gather(*early.values(), return_exceptions=True)
        check_media_total(images)
        without_scans: list[tuple[ExtractedDocument, FileError]] = []
        documents = self.without_unsent_scans(documents, media_bytes(images), unreadable, without_scans)
        documents = self.with_fitting_pictures(documents, media_bytes(images), unreadable)
        documents = self.shared(documents)
        if not documents and not images and not self.with_texts:
            raise unreadable[0]
        if not documents and not images:  # forwarded texts whose files all were left out
            return Prepared(
                content=with_quote(self.question or "", self.quoted),
                cut=[],
                skipped=self.skipped_kinds,
                unreadable=unreadable,
            )
        question = with_quote(self.question or self.default_question(len(documents), len(images)), self.quoted)
        while True:
            parts = await self.document_parts(documents, question)
            scans = [doc for doc, _ in documents if doc.needs_file_part]
            if not scans:
                break
            try:
                self.check_scans_fit([*parts, *images], scans)
                break
            except ScanTooLong:
                # The longest scan that has a text layer (pages with pictures among pages of text) goes as that text.
                readable = [i for i, (doc, _) in enumerate(documents) if doc.needs_file_part and doc.text.strip()]
                if not readable:
                    raise
                index = max(readable, key=lambda i: documents[i][0].pages_total or 1)
                doc = replace(documents[index][0], needs_file_part=False)
                documents[index] = (doc, b"")
                without_scans.append((doc, ScanTooLong(doc.filename, doc.pages_total or 1, 0)))
        return Prepared(
            content=[*parts, *images],
            # A PDF sent whole as a file part goes to the model uncut, whatever of its text was read.
            cut=[doc for doc, _ in documents if doc.truncated and not doc.needs_file_part],
            skipped=self.skipped_kinds,
            unreadable=unreadable,
            without_scans=without_scans,
            without_pictures=[doc for doc, _ in documents if doc.pictures_left_out],
        )

    async def _fetch(
        self, download: Downloader, attachment: Attachment, max_picture_bytes: int
    ) -> tuple[bytes, ExtractedDocument | dict[str, Any]]:
        data = await download(attachment)
        read = await read_attachment(
            attachment, data, self.max_chars, vision=self.model.vision, max_picture_bytes=max_picture_bytes
        )
        return data, read

    def shared(self, documents: list[tuple[ExtractedDocument, bytes]]) -> list[tuple[ExtractedDocument, bytes]]:
        """``documents`` cut to their shares of the context and of ``MAX_DOCUMENTS_CHARS``: a short one keeps all its
        text, and what it leaves goes to the long ones. A document's pictures take their share of its room in the
        context: only those that go."""
        needs = [estimate_text(doc.text) + len(doc.pictures) * IMAGE_TOKENS for doc, _ in documents]
        documents = [
            (fit_tokens(doc, tokens - len(doc.pictures) * IMAGE_TOKENS), data)
            for (doc, data), tokens in zip(documents, shares(needs, self.document_tokens), strict=True)
        ]
        lengths = shares([len(doc.text) for doc, _ in documents], MAX_DOCUMENTS_CHARS)
        return [(within_cap(doc, chars), data) for (doc, data), chars in zip(documents, lengths, strict=True)]

    @staticmethod
    async def document_parts(documents: list[tuple[ExtractedDocument, bytes]], question: str) -> list[dict[str, Any]]:
        """The documents' text with the question, then the scans as files and the documents' pictures."""
        blocks = [document_prompt(doc, None, default_question="").rstrip() for doc, _ in documents]
        parts: list[dict[str, Any]] = [{"type": "text", "text": "\n\n".join([*blocks, question])}]
        scans = [(doc, data) for doc, data in documents if doc.needs_file_part]
        if scans:
            parts.extend(await in_image_workers(scan_parts, scans))
        parts.extend(picture for doc, _ in documents for picture in doc.pictures)
        return parts

    def without_unsent_scans(
        self,
        documents: list[tuple[ExtractedDocument, bytes]],
        images_bytes: int,
        unreadable: list[FileError],
        without_scans: list[tuple[ExtractedDocument, FileError]],
    ) -> list[tuple[ExtractedDocument, bytes]]:
        """``documents`` without the scans that cannot go to the model, each told in ``unreadable``: every scan for
        a model that cannot see (its pages are pictures; the provider would read them with a paid recognition, again
        with every question), a scan over ``MAX_SCAN_BYTES``, and scans that do not fit the request's media budget
        beside the images and the scans before them. A PDF with text besides its scanned pages goes as that text,
        with a note on the pages left out, told in ``without_scans``."""
        room = MAX_REQUEST_MEDIA_BYTES - images_bytes
        sent = []
        for doc, data in documents:
            if doc.needs_file_part:
                refusal: FileError | None = None
                if not self.model.vision:
                    refusal = UnsupportedFile(doc.filename, "scan")
                elif len(data) > min(MAX_SCAN_BYTES, room):
                    refusal = ScanTooLarge(doc.filename, len(data), min(MAX_SCAN_BYTES, max(room, 0)))
                if refusal is not None:
                    if doc.text.strip():
                        doc = replace(doc, needs_file_part=False)
                        without_scans.append((doc, refusal))
                        sent.append((doc, data))
                    else:
                        unreadable.append(refusal)
                    continue
                room -= len(data)
            sent.append((doc, data))
        return sent

    def with_fitting_pictures(
        self, documents: list[tuple[ExtractedDocument, bytes]], images_bytes: int, unreadable: list[FileError]
    ) -> list[tuple[ExtractedDocument, bytes]]:
        """``documents`` with the pictures (of a DOCX) that fit the request's media budget beside the images, the scans
        and the pictures of the documents before them; the rest are left out, by their numbers. A document of
        pictures alone none of which fits is left out, told in ``unreadable``."""
        room = MAX_REQUEST_MEDIA_BYTES - images_bytes - sum(len(data) for doc, data in documents if doc.needs_file_part)
        kept = []
        for doc, data in documents:
            if doc.pictures:
                fitted = fit_pictures(doc, max(room, 0))
                if not fitted.pictures and not fitted.text.strip():
                    unreadable.append(ImagesTooLarge(media_bytes(doc.pictures), max(room, 0), len(doc.pictures)))
                    continue
                doc = fitted
                room -= media_bytes(doc.pictures)
            kept.append((doc, data))
        return kept

    def check_scans_fit(self, content: list[dict[str, Any]], scans: list[ExtractedDocument]) -> None:
        """A scan goes whole as a file part, estimated by its pages: one bigger than the model's context is
        refused here, with what fits, not by the request check with a message about a long conversation."""
        budget = self.model.input_tokens - self.role_tokens
        needed = estimate_content(content)
        if needed <= budget:
            return
        rest = estimate_content([part for part in content if part.get("type") != "file"])
        largest = max(scans, key=lambda doc: doc.pages_total or 1)
        others = sum(doc.pages_total or 1 for doc in scans if doc is not largest)
        free = max(0, (budget - rest) // SCAN_PAGE_TOKENS - others)
        raise ScanTooLong(largest.filename, largest.pages_total or 1, free, needed + self.role_tokens)


def scan_parts(scans: list[tuple[ExtractedDocument, bytes]]) -> list[dict[str, Any]]:
    """The file parts of scans (megabytes of base64: built in a worker thread), with their page counts noted for
    the token estimate, which would otherwise look for them in the bytes again."""
    parts = []
    for doc, data in scans:
        part = pdf_file_part(data, doc.filename)
        remember_pdf_pages(part["file"]["file_data"], doc.pages_total or 1)
        parts.append(part)
    return parts


async def read_attachment(
    attachment: Attachment,
    data: bytes,
    max_chars: int,
    *,
    vision: bool = False,
    max_picture_bytes: int | None = None,
) -> ExtractedDocument | dict[str, Any]:
    """A document's text (read in a child process; with its pictures for a model with ``vision``, at most
    ``max_picture_bytes`` of them), or an image part for a photo or an image sent as a file (made in a child process
    too: ``read_image``). An image whose name and
    type did not say so is refused for a model that cannot see (``UnsupportedFile`` of kind ``"vision"``): the other
    files of the request still go."""
    if attachment.photo or sniff_signature(data) == "image":
        if not vision:
            raise UnsupportedFile(attachment.name, "vision")
        return await read_image(data, attachment.mime_type, attachment.name)
    try:
        return await read_document(
            data, attachment.name, attachment.mime_type, max_chars, vision=vision, max_picture_bytes=max_picture_bytes
        )
    except UnsupportedFile as exc:
        if exc.kind != "image":  # an image by its name or type whose bytes are not one: image_part says why
            raise
    return await read_image(data, attachment.mime_type, attachment.name)
