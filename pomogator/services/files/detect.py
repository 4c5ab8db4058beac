"""Recognise what a user's file is from its first bytes, its name and its declared MIME type.

The content wins over the name: a PDF renamed to ``.txt`` is still read as a PDF, and an executable renamed
to ``.txt`` is still refused. The name and the MIME type decide only when the bytes carry no known signature.
"""

from __future__ import annotations

import io
import zipfile
from typing import Literal

from pomogator.errors import FileTooLarge

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
"""Telegram's Bot API refuses to hand out files bigger than this."""

FileKind = Literal[
    # readable
    "text",
    "markdown",
    "csv",
    "json",
    "code",
    "pdf",
    "docx",
    "image",
    # refused
    "archive",
    "executable",
    "audio",
    "video",
    "legacy-office",
    "spreadsheet",
    "presentation",
    "other-document",
    "rtf",
]

ImageFormat = Literal["jpeg", "png", "gif", "webp"]

IMAGE_MIME_TYPES: dict[ImageFormat, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_EXTENSION_KINDS: dict[FileKind, frozenset[str]] = {
    "text": _words("txt text log nfo srt vtt tex bib"),
    "markdown": _words("md markdown mdown mkd rst adoc org"),
    "csv": _words("csv tsv psv"),
    "json": _words("json jsonl ndjson geojson ipynb"),
    "code": _words(
        "py pyi js mjs cjs ts tsx jsx java kt kts scala groovy c h cc cpp cxx hpp hh cs fs go rs rb php "
        "swift m mm dart lua pl pm r jl hs ex exs erl clj elm zig nim sh bash zsh fish ps1 bat cmd sql "
        "graphql proto html htm css scss sass less vue svelte xml xsd svg yaml yml toml ini cfg conf env "
        "properties gradle cmake mk tf hcl dockerfile diff patch asm s sol v vhd f90 pas lisp ml"
    ),
    "pdf": frozenset({"pdf"}),
    "docx": frozenset({"docx"}),
    "image": _words("jpg jpeg jpe png gif webp bmp tif tiff heic heif avif ico psd raw cr2 nef"),
    "archive": _words("zip rar 7z tar gz tgz bz2 tbz2 xz txz zst lz lzma cab arj iso jar war"),
    "executable": _words(
        "exe dll msi com scr sys so dylib bin elf apk aab ipa dmg pkg deb rpm appimage class pyc o a lib wasm"
    ),
    "audio": _words("mp3 ogg oga opus wav flac m4a aac wma aiff amr mid midi"),
    "video": _words("mp4 m4v mkv webm avi mov wmv flv 3gp mpg mpeg"),
    "legacy-office": _words("doc dot xls xlt ppt pps pot wps msg"),
    "spreadsheet": _words("xlsx xlsm xlsb xltx numbers"),
    "presentation": _words("pptx pptm ppsx key"),
    "other-document": _words("odt ods odp odg pages epub docm dotx dotm"),
    "rtf": frozenset({"rtf"}),
}

_EXTENSIONS: dict[str, FileKind] = {ext: kind for kind, exts in _EXTENSION_KINDS.items() for ext in exts}

_FILENAMES: dict[str, FileKind] = {
    "dockerfile": "code",
    "makefile": "code",
    "gemfile": "code",
    "rakefile": "code",
    "procfile": "code",
    "jenkinsfile": "code",
    "vagrantfile": "code",
    "readme": "text",
    "license": "text",
    "changelog": "text",
}

_MIME_TYPES: dict[str, FileKind] = {
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/csv": "csv",
    "text/tab-separated-values": "csv",
    "application/json": "json",
    "application/x-ndjson": "json",
    "application/pdf": "pdf",
    # An image by its type, yet XML text: read as code, so a model without vision reads it too.
    "image/svg+xml": "code",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/msword": "legacy-office",
    "application/vnd.ms-excel": "legacy-office",
    "application/vnd.ms-powerpoint": "legacy-office",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "spreadsheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "presentation",
    "application/rtf": "rtf",
    "text/rtf": "rtf",
    "application/zip": "archive",
    "application/x-zip-compressed": "archive",
    "application/vnd.rar": "archive",
    "application/x-rar-compressed": "archive",
    "application/x-7z-compressed": "archive",
    "application/x-tar": "archive",
    "application/gzip": "archive",
    "application/x-gzip": "archive",
    "application/x-msdownload": "executable",
    "application/x-executable": "executable",
    "application/vnd.android.package-archive": "executable",
}

_MIME_PREFIXES: dict[str, FileKind] = {"audio/": "audio", "video/": "video", "image/": "image"}

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Office keeps a password-protected DOCX, XLSX or PPTX in an OLE2 container as a stream of this name (MS-OFFCRYPTO);
# the container's directory stores names in UTF-16.
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")


def check_size(size: int | None, limit: int = MAX_DOWNLOAD_BYTES) -> None:
    """Raise ``FileTooLarge`` when a file of ``size`` bytes is over ``limit``; an unknown size passes."""
    if size is not None and size > limit:
        raise FileTooLarge(size, limit)


def extension(filename: str) -> str:
    """The lower-case extension of ``filename`` without the dot, or ``""``."""
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def sniff_image(data: bytes) -> ImageFormat | None:
    """The image format a model can take (JPEG, PNG, GIF, WEBP) recognised by its signature, or ``None``."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:15] == b"VP8":
        return "webp"
    return None


def _sniff_other_image(data: bytes) -> bool:
    """Image formats models do not take: BMP, TIFF, PSD, ICO, HEIC/HEIF, AVIF."""
    return (
        (data[:2] == b"BM" and data[6:10] == b"\x00\x00\x00\x00")
        or data[:4] in (b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00")
        or data[:6] == b"8BPS\x00\x01"
        or (data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"hevc"))
    )


_ARCHIVE_SIGNATURES = (
    b"Rar!\x1a\x07",
    b"7z\xbc\xaf\x27\x1c",
    b"\x1f\x8b\x08",
    b"\xfd7zXZ\x00",
    b"\x28\xb5\x2f\xfd",
)
_EXECUTABLE_SIGNATURES = (
    b"\x7fELF",
    b"\xca\xfe\xba\xbe",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\x00asm",
    b"dex\n0",
)


def sniff_signature(data: bytes) -> FileKind | None:
    """The kind of a file recognised by its magic bytes alone; ``None`` for text and unknown content.

    Signatures that are also plausible starts of a text ("MZ", "BM", "ID3") are checked together with the
    binary fields that follow them, so a text file is not refused because of its first letters. A zip archive
    is reported as ``"archive"``; ``detect_kind`` looks inside it for Office documents.
    """
    if data.startswith(b"%PDF-"):
        return "pdf"
    if sniff_image(data) is not None or _sniff_other_image(data):
        return "image"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "archive"
    if (
        data.startswith(_ARCHIVE_SIGNATURES)
        or (data.startswith(b"BZh") and data[4:10] == b"1AY&SY")
        or (data.startswith(b"MSCF") and data[4:8] == b"\x00\x00\x00\x00")
        or data[257:262] == b"ustar"
    ):
        return "archive"
    if data.startswith(_EXECUTABLE_SIGNATURES) or (data.startswith(b"MZ") and b"\x00" in data[2:64]):
        return "executable"
    if data.startswith(_OLE2):
        return "legacy-office"
    if data.startswith(b"{\\rtf"):
        return "rtf"
    if (
        (data.startswith(b"ID3") and data[3:4] in (b"\x02", b"\x03", b"\x04"))
        or (data.startswith(b"OggS") and data[4:5] == b"\x00")
        or data.startswith((b"fLaC\x00", b"fLaC\x80", b"#!AMR\n", b"MThd\x00\x00\x00\x06"))
        or (data[:4] in (b"RIFF", b"FORM") and data[8:12] in (b"WAVE", b"AIFF"))
    ):
        return "audio"
    if data[4:8] == b"ftyp":
        return "audio" if data[8:11] == b"M4A" else "video"
    if data.startswith((b"\x1a\x45\xdf\xa3", b"FLV\x01")) or (data[:4] == b"RIFF" and data[8:12] == b"AVI "):
        return "video"
    return None


def encrypted_office(data: bytes) -> bool:
    """Whether ``data`` is a password-protected DOCX, XLSX or PPTX: an OLE2 container, like the old formats, but
    one that holds the encrypted package of a new one."""
    return data.startswith(_OLE2) and _ENCRYPTED_PACKAGE in data


def _zip_kind(data: bytes, by_name: FileKind | None) -> FileKind:
    """Tell an Office document from a plain zip archive by its members (the central directory only)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return "docx" if by_name == "docx" else "archive"
    if "word/document.xml" in names:
        # Macro-enabled documents and templates (.docm, .dotx) share the layout: named so, they keep their kind.
        return "other-document" if by_name == "other-document" else "docx"
    if "xl/workbook.xml" in names:
        return "spreadsheet"
    if "ppt/presentation.xml" in names:
        return "presentation"
    if "mimetype" in names or "META-INF/manifest.xml" in names:
        return "other-document"
    if by_name == "docx":
        return "docx"  # a zip that claims to be a DOCX but is not one: reading it reports the damage
    # Office formats without Office's layout (.xlsb's binary parts, Apple's .numbers, .key and .pages) are what
    # their names say: told to save them otherwise, not to unpack them.
    named = ("executable", "archive", "spreadsheet", "presentation", "other-document", "legacy-office")
    return by_name if by_name in named else "archive"


def detect_kind(data: bytes, filename: str, mime_type: str | None = None) -> FileKind:
    """The kind of a user's file.

    Files without a known signature and without a telling name or MIME type are reported as ``"text"``;
    whether they really are text is decided when they are decoded.
    """
    ext = extension(filename)
    by_name = _EXTENSIONS.get(ext) if ext else _FILENAMES.get(filename.lower())
    by_mime = _mime_kind(mime_type)
    signature = sniff_signature(data)
    if signature is None and "pdf" in (by_name, by_mime) and b"%PDF-" in data[:1024]:
        signature = "pdf"  # the PDF header may follow some junk within the first kilobyte
    if signature == "archive" and data.startswith(b"PK"):
        return _zip_kind(data, by_name or by_mime)
    if signature is not None:
        return signature
    if by_name is not None:
        return by_name
    if by_mime is not None:
        return by_mime
    return "text"


def _mime_kind(mime_type: str | None) -> FileKind | None:
    if not mime_type:
        return None
    mime = mime_type.split(";", 1)[0].strip().lower()
    if mime in _MIME_TYPES:
        return _MIME_TYPES[mime]
    for prefix, kind in _MIME_PREFIXES.items():
        if mime.startswith(prefix):
            return kind
    return None
