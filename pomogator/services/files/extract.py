"""The single entry point that turns a downloaded document into text for the model.

``extract_document`` does the work in the calling process. The bot calls it in a child process instead
(``isolated.read_document``): ``serve`` is that child's side. ``encode_request`` carries the document to it over its
stdin, and ``decode_outcome`` reads the result or the refusal that ``serve`` writes back on its stdout. This module
must stay cheap to import (the child starts with it): the readers import pypdf and lxml only when a PDF or a DOCX
comes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from typing import Any, cast

import orjson

from pomogator.errors import (
    CorruptFile,
    EmptyFile,
    EncryptedFile,
    FileError,
    FileTooComplex,
    FileTooLarge,
    ImagesTooLarge,
    ImageTooLarge,
    UnpackedTooLarge,
    UnsupportedFile,
    exception_chain,
)

from .detect import _EXTENSIONS, FileKind, _mime_kind, check_size, detect_kind, encrypted_office, extension
from .document import ExtractedDocument
from .docx import extract_docx
from .pdf import TIME_BUDGET_S, extract_pdf
from .text import extract_text

CHILD_NICENESS = 10
"""The child yields the CPU to the bot's event loop: answers keep streaming while a heavy file is read."""


def extract_document(
    data: bytes,
    filename: str,
    mime_type: str | None,
    max_chars: int,
    *,
    pdf_time_budget: float = TIME_BUDGET_S,
    vision: bool = False,
    max_picture_bytes: int | None = None,
) -> ExtractedDocument:
    """Read a user's document and return at most ``max_chars`` characters of its text.

    Raises ``FileTooLarge`` over Telegram's download limit, ``UnsupportedFile`` (with ``kind``: "image",
    "archive", "executable", "audio", "video", "legacy-office", "spreadsheet", "presentation",
    "other-document", "rtf", "binary") for files it does not read, ``CorruptFile``, ``EncryptedFile`` (also for a
    password-protected DOCX, XLSX or PPTX, which Office keeps in an old-format container), ``EmptyFile`` (no text:
    blank, or a PDF without pages), and ``FileTooComplex`` (a PDF whose pages take longer than ``pdf_time_budget``
    before any text turns up).
    An image yields ``UnsupportedFile(kind="image")``: send it with ``image_part`` instead. The pictures of a DOCX
    come as image parts when the model has ``vision``, at most ``max_picture_bytes`` of them, and are only counted
    otherwise (``docx.extract_docx``, which also raises ``UnsupportedFile`` for a DOCX of pictures alone: kind
    "docx-images" without ``vision``, "docx-pictures" when none of them can be read; and ``ImagesTooLarge`` when
    none of them fits).
    This is CPU-bound work on untrusted input: the bot runs it in a child process (``isolated.read_document``).
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    check_size(len(data))
    kind = detect_kind(data, filename, mime_type)
    if kind == "pdf":
        return extract_pdf(data, filename, max_chars, time_budget=pdf_time_budget)
    if kind == "docx":
        return extract_docx(data, filename, max_chars, vision=vision, max_picture_bytes=max_picture_bytes)
    if kind in ("text", "markdown", "csv", "json", "code"):
        return extract_text(data, filename, kind, max_chars)
    if kind == "legacy-office" and encrypted_office(data):
        raise EncryptedFile(filename)
    raise UnsupportedFile(filename, kind)


def declared_kind(filename: str, mime_type: str | None) -> FileKind | None:
    """The kind a file claims before its bytes are seen: by its MIME type, else by its name's extension."""
    by_mime = _mime_kind(mime_type)
    if by_mime is not None:
        return by_mime
    ext = extension(filename)
    return _EXTENSIONS.get(ext) if ext else None


# --- the child process ------------------------------------------------------------------------------------------


def encode_request(
    data: bytes,
    filename: str,
    mime_type: str | None,
    max_chars: int,
    *,
    memory_bytes: int,
    cpu_seconds: int,
    time_budget: float,
    vision: bool = False,
    max_picture_bytes: int | None = None,
    image: bool = False,
) -> bytes:
    """What the child reads on stdin: one line of JSON (the file's name and type, ``max_chars``, the limits,
    whether the model sees pictures and how many bytes of them it may get, whether the file is an image to make a
    content part of), then the file's bytes."""
    header = {
        "filename": _clean(filename),
        "mime_type": mime_type,
        "max_chars": max_chars,
        "memory_bytes": memory_bytes,
        "cpu_seconds": cpu_seconds,
        "time_budget": time_budget,
        "vision": vision,
        "max_picture_bytes": max_picture_bytes,
        "image": image,
    }
    return orjson.dumps(header) + b"\n" + data


def serve() -> None:
    """The child's side: read one request from stdin, apply the limits to this process, write the outcome to
    stdout. A memory or CPU limit reached shows as ``FileTooComplex`` (or, for the CPU, as the child's death)."""
    header = orjson.loads(sys.stdin.buffer.readline())
    _limit_self(int(header["memory_bytes"]), int(header["cpu_seconds"]))
    filename = str(header["filename"])
    outcome: dict[str, Any]
    try:
        data = sys.stdin.buffer.read()
        if header.get("image"):
            from .images import image_part  # Pillow: only for the images

            outcome = {"image": image_part(data, header["mime_type"], filename=filename)}
            sys.stdout.buffer.write(orjson.dumps(outcome))
            sys.stdout.buffer.flush()
            return
        doc = extract_document(
            data,
            filename,
            header["mime_type"],
            int(header["max_chars"]),
            pdf_time_budget=header["time_budget"],
            vision=bool(header.get("vision")),
            max_picture_bytes=header.get("max_picture_bytes"),
        )
        outcome = {"document": {**asdict(doc), "text": _clean(doc.text)}}
    except MemoryError:
        outcome = {"error": {"type": "FileTooComplex", "filename": filename}}
    except FileError as exc:
        outcome = {"error": _error_fields(exc)}
        if _caused_by_memory(exc):  # a reader turned MemoryError into CorruptFile
            outcome = {"error": {"type": "FileTooComplex", "filename": filename}}
    sys.stdout.buffer.write(orjson.dumps(outcome))
    sys.stdout.buffer.flush()


def _limit_self(memory_bytes: int, cpu_seconds: int) -> None:
    import logging
    import resource

    def cap(limit: int, soft: int, hard: int) -> None:
        _, current = resource.getrlimit(limit)
        if current != resource.RLIM_INFINITY:  # a limit can be lowered, never raised
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(limit, (soft, hard))

    cap(resource.RLIMIT_AS, memory_bytes, memory_bytes)
    # SIGXCPU at the soft limit, SIGKILL a second later: a child its parent could not kill still ends.
    cap(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    cap(resource.RLIMIT_CORE, 0, 0)  # SIGXCPU would dump a core
    os.nice(CHILD_NICENESS)
    # pypdf logs a warning for every oddity of a damaged file; nobody reads the child's stderr unless it fails.
    logging.getLogger("pypdf").setLevel(logging.ERROR)


def _caused_by_memory(exc: BaseException) -> bool:
    return any(isinstance(seen, MemoryError) for seen in exception_chain(exc))


def _clean(text: str) -> str:
    """``text`` without lone surrogates (a PDF's broken ToUnicode map can produce them; JSON cannot carry them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")
    return text


def _error_fields(exc: FileError) -> dict[str, Any]:
    if isinstance(exc, ImageTooLarge):
        return {"type": "ImageTooLarge", "filename": exc.filename, "limit": exc.limit, "dimensions": exc.dimensions}
    if isinstance(exc, ImagesTooLarge):
        return {"type": "ImagesTooLarge", "size": exc.size, "limit": exc.limit, "count": exc.count}
    if isinstance(exc, UnpackedTooLarge):
        return {"type": "UnpackedTooLarge", "filename": exc.filename, "size": exc.size, "limit": exc.limit}
    if isinstance(exc, FileTooLarge):
        return {"type": "FileTooLarge", "size": exc.size, "limit": exc.limit}
    if isinstance(exc, UnsupportedFile):
        return {"type": "UnsupportedFile", "filename": exc.filename, "kind": exc.kind}
    if isinstance(exc, CorruptFile | EmptyFile | EncryptedFile | FileTooComplex):
        return {"type": type(exc).__name__, "filename": exc.filename}
    return {"type": "FileError", "detail": str(exc)}


_BY_NAME: dict[str, type[CorruptFile | EmptyFile | EncryptedFile | FileTooComplex]] = {
    "CorruptFile": CorruptFile,
    "EmptyFile": EmptyFile,
    "EncryptedFile": EncryptedFile,
    "FileTooComplex": FileTooComplex,
}


def decode_image(raw: bytes) -> dict[str, Any]:
    """The image content part the child wrote to stdout, or the refusal it wrote, raised again in this process."""
    outcome = orjson.loads(raw)
    if "image" in outcome:
        return cast(dict[str, Any], outcome["image"])
    raise _error(outcome["error"])


def decode_outcome(raw: bytes) -> ExtractedDocument:
    """The document the child wrote to stdout, or the refusal it wrote, raised again in this process."""
    outcome = orjson.loads(raw)
    if "document" in outcome:
        document = outcome["document"]
        return ExtractedDocument(
            **{
                **document,
                "scanned_pages": tuple(document.get("scanned_pages", ())),
                "pictures": tuple(document.get("pictures", ())),
                "pictures_left_out": tuple((number, loss) for number, loss in document.get("pictures_left_out", ())),
            }
        )
    raise _error(outcome["error"])


def _error(error: dict[str, Any]) -> FileError:
    """The refusal the child wrote, as this process raises it."""
    kind = error["type"]
    if kind == "ImageTooLarge":
        dimensions = error.get("dimensions")
        shape = (int(dimensions[0]), int(dimensions[1])) if dimensions else None
        return ImageTooLarge(str(error["filename"]), int(error["limit"]), shape)
    if kind == "UnpackedTooLarge":
        return UnpackedTooLarge(str(error["filename"]), int(error["size"]), int(error["limit"]))
    if kind == "ImagesTooLarge":
        return ImagesTooLarge(int(error["size"]), int(error["limit"]), int(error["count"]))
    if kind == "FileTooLarge":
        return FileTooLarge(int(error["size"]), int(error["limit"]))
    if kind == "UnsupportedFile":
        return UnsupportedFile(str(error["filename"]), error["kind"])
    if kind in _BY_NAME:
        return _BY_NAME[kind](str(error["filename"]))
    return FileError(str(error.get("detail") or "the document could not be read"))
