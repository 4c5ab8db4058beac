"""The pictures a DOCX shows (diagrams, screenshots, photos of a form) as image parts for a model that sees.

Read in the document reader's child process, with its memory and CPU limits: the pictures come from a stranger and
are decoded here, each shrunk as a photo is (``images.image_part``). The pictures are exempt from the zip
container's ratio check (``docx.check_zip_bounds``), so each is bounded by its declared size before it is unpacked,
and all of them together. Imported only when a document has pictures: it brings Pillow.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import replace
from typing import Any

from pomogator.errors import ImagesTooLarge

from .detect import sniff_image
from .document import ExtractedDocument, PictureLoss
from .images import MAX_IMAGE_BYTES, MAX_REQUEST_MEDIA_BYTES, convertible, image_part, media_bytes

MAX_DOCUMENT_PICTURES = 10
"""Pictures one document gives the model at most: as many as an album holds. The rest are named as left out."""

MIN_PICTURE_SIDE = 32
"""A picture shorter than this on a side is decoration (a bullet, a rule, an icon): it is not sent, nor counted,
unless the document has nothing else."""

MAX_PICTURE_BYTES = MAX_IMAGE_BYTES
"""One picture unpacked, as big as an image file the bot reads: a bigger one is left out before it is unpacked."""

MAX_PICTURES_UNPACKED_BYTES = 100 * 1024 * 1024
"""All the pictures of one document unpacked: bounds the reader's work when many big bitmaps come."""

MAX_DOCUMENT_PICTURE_BYTES = MAX_REQUEST_MEDIA_BYTES
"""The pictures of one document after shrinking. The bot asks for no more than what is left of the request's budget
(``max_bytes``), so one request's documents never bring more; it fits them exactly later (``fit_pictures``)."""

TIME_BUDGET_S = 20.0
"""Pictures are decoded until this long has passed; a third of the reader's wall-clock limit."""

_HEADER_BYTES = 64
_PIL_FORMATS = ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"]


def read_pictures(
    archive: zipfile.ZipFile,
    names: list[str],
    filename: str,
    *,
    vision: bool,
    alone: bool,
    time_budget: float | None = None,
    max_bytes: int | None = None,
) -> tuple[tuple[dict[str, Any], ...], tuple[tuple[int, PictureLoss], ...]]:
    """The image parts of the pictures ``names`` (parts of ``archive``, in document order) and the numbers of those
    left out, with why (see ``ExtractedDocument``).

    A picture in a format models do not take (EMF, WMF and other vector drawings) is left out as ``"format"``; a
    damaged one, one over ``MAX_PICTURE_BYTES`` or with too many pixels as ``"unreadable"``; those past
    ``MAX_DOCUMENT_PICTURES``, ``MAX_PICTURES_UNPACKED_BYTES`` or ``MAX_DOCUMENT_PICTURE_BYTES`` (``max_bytes``
    when it is less: what is left of the request's media budget), or after ``time_budget`` (by default
    ``TIME_BUDGET_S``), as ``"count"``, ``"size"`` and ``"time"``. Without ``vision`` nothing is decoded: every
    picture is left out as ``"vision"``. Decorative pictures (``MIN_PICTURE_SIDE``) are skipped unless the document
    is ``alone``: nothing but them. Raises ``ImagesTooLarge`` when the document is ``alone`` and none of its
    pictures fits the bytes left.
    """
    found: list[tuple[str, PictureLoss | None]] = []
    decoration: list[tuple[str, PictureLoss | None]] = []
    for name in names:
        loss, decorative = _inspect(archive, name)
        (decoration if decorative else found).append((name, loss))
    if alone and not found:
        found = decoration
    if not vision:
        return (), tuple((number, "vision") for number in range(1, len(found) + 1))
    deadline = time.monotonic() + (TIME_BUDGET_S if time_budget is None else time_budget)
    limit = MAX_DOCUMENT_PICTURE_BYTES if max_bytes is None else min(max_bytes, MAX_DOCUMENT_PICTURE_BYTES)
    parts: list[dict[str, Any]] = []
    left_out: list[tuple[int, PictureLoss]] = []
    unpacked = sent = 0
    too_big: list[int] = []  # the sizes of the pictures decoded that did not fit
    for number, (name, loss) in enumerate(found, start=1):
        unpacked_size = archive.getinfo(name).file_size
        if loss is None and len(parts) >= MAX_DOCUMENT_PICTURES:
            loss = "count"
        elif loss is None and (parts or too_big) and time.monotonic() >= deadline:
            loss = "time"
        elif loss is None and sent >= limit and (parts or not alone):
            # Nothing more fits: not decoded. A document of pictures alone with none sent measures them, to say so.
            loss = "size"
        elif loss is None and unpacked + unpacked_size > MAX_PICTURES_UNPACKED_BYTES:
            loss = "size"
        elif loss is None:
            unpacked += unpacked_size
            part = _part(archive, name, f"{filename} #{number}")
            size = media_bytes([part]) if part is not None else 0
            if part is None:
                loss = "unreadable"
            elif sent + size > limit:
                loss = "size"
                too_big.append(size)
            else:
                parts.append(part)
                sent += size
        if loss is not None:
            left_out.append((number, loss))
    if alone and not parts and too_big:
        raise ImagesTooLarge(sum(too_big), max(limit, 0), len(too_big))
    return tuple(parts), tuple(left_out)


def _inspect(archive: zipfile.ZipFile, name: str) -> tuple[PictureLoss | None, bool]:
    """Why the picture ``name`` cannot go, if that is known from its header, and whether it is decoration."""
    from PIL import Image

    if archive.getinfo(name).file_size > MAX_PICTURE_BYTES:
        return "unreadable", False
    try:
        with archive.open(name) as stream:
            head = stream.read(_HEADER_BYTES)
            if sniff_image(head) is None and not convertible(head):
                return "format", False
            stream.seek(0)
            # Only the header is read here: the size, not the pixels.
            with Image.open(stream, formats=_PIL_FORMATS) as image:
                width, height = image.size
    except MemoryError:
        raise
    except Exception:  # zipfile, zlib and Pillow raise many kinds of errors on damaged input
        return "unreadable", False
    return None, min(width, height) < MIN_PICTURE_SIDE


def _part(archive: zipfile.ZipFile, name: str, label: str) -> dict[str, Any] | None:
    """The picture as an image part, shrunk as photos are; ``None`` when it cannot be read."""
    try:
        data = archive.read(name)
        return image_part(data, filename=label, max_bytes=MAX_PICTURE_BYTES)
    except MemoryError:
        raise
    except Exception:  # FileError from image_part; zipfile and zlib raise many kinds of errors on damaged input
        return None


def fit_pictures(doc: ExtractedDocument, room: int) -> ExtractedDocument:
    """``doc`` with the pictures that fit in ``room`` bytes (what is left of a request's media budget), in order;
    the others are left out as ``"size"``."""
    if not doc.pictures or media_bytes(doc.pictures) <= room:
        return doc
    gone = {number for number, _ in doc.pictures_left_out}
    numbers = [number for number in range(1, doc.picture_count + 1) if number not in gone]
    kept: list[dict[str, Any]] = []
    left_out = list(doc.pictures_left_out)
    used = 0
    for number, part in zip(numbers, doc.pictures, strict=True):
        size = media_bytes([part])
        if used + size <= room:
            kept.append(part)
            used += size
        else:
            left_out.append((number, "size"))
    return replace(doc, pictures=tuple(kept), pictures_left_out=tuple(sorted(left_out)))
