"""Documents read in a child process with limits, and the caps that keep crafted PDFs short; files built here."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from pomogator.errors import (
    CorruptFile,
    EmptyFile,
    EncryptedFile,
    FileTooComplex,
    ImageTooLarge,
    UnpackedTooLarge,
    UnsupportedFile,
)
from pomogator.services.files import (
    ExtractedDocument,
    ReadLimits,
    extract_document,
    image_part,
    images,
    isolated,
    pdf,
    read_document,
    read_image,
)
from tests.services.test_files import blank_pdf, encrypt_pdf, make_docx, make_pdf, make_png, make_zip
from tests.services.test_images import png_header

# ~3 MB of text operators, over pypdf's parsing budget per stream (``pdf.PARSING_WORK_LIMIT``): every page that
# shows it costs the reader a second or more before it gives up.
SLOW_STREAM = b"BT /F1 12 Tf 1 0 Td ( ) Tj ET\n" * 100_000
HELLO = b"BT /F1 12 Tf 72 720 Td (Hello) Tj ET"
# Decodes to more than ``pdf.DECODED_STREAM_LIMIT``, from 20 KB on disk.
HUGE_STREAM = b"%" + b" " * (pdf.DECODED_STREAM_LIMIT + 1024) + b"\n"


def shared_stream_pdf(pages: int, content: bytes, *, text_first: bool = False) -> bytes:
    """A crafted PDF: every page shows one compressed content stream, so the file stays tiny while the reader
    decodes and parses that stream again for each page. With ``text_first`` page 1 has a line of text instead."""
    packed = zlib.compress(content, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (6 + i) for i in range(pages)) + b"] /Count %d >>" % pages,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(HELLO), HELLO),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream",
    ]
    for number in range(pages):
        contents = 4 if text_first and number == 0 else 5
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % contents
        )
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


class Spawns:
    """The children ``read_document`` starts, recorded."""

    def __init__(self) -> None:
        self.processes: list[asyncio.subprocess.Process] = []
        self.started = asyncio.Event()


def recording_spawns(monkeypatch: pytest.MonkeyPatch) -> Spawns:
    spawns = Spawns()
    spawn = isolated.spawn

    async def recording() -> asyncio.subprocess.Process:
        process = await spawn()
        spawns.processes.append(process)
        spawns.started.set()
        return process

    monkeypatch.setattr(isolated, "spawn", recording)
    return spawns


async def ticking(gaps: list[float], stop: asyncio.Event) -> None:
    """Record how late the event loop wakes this task up: a loop busy with a file shows long gaps."""
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.02)
        gaps.append(time.monotonic() - before)


# --- the child reads as the bot's own process did ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "mime"),
    [
        ("Привет, мир!\nВторая строка\n".encode(), "notes.txt", "text/plain"),
        ("город;население\nМосква;13 млн\n".encode("cp1251"), "cities.csv", "text/csv"),
        (make_pdf(["Invoice 4711", "Total: 99 EUR"]), "invoice.pdf", "application/pdf"),
        (blank_pdf(3), "scan.pdf", "application/pdf"),
        (make_docx(), "report.docx", None),
    ],
    ids=["text", "cp1251", "pdf", "scan", "docx"],
)
async def test_a_document_read_in_a_child_is_what_the_reader_returns(data: bytes, name: str, mime: str | None) -> None:
    assert await read_document(data, name, mime, 10_000) == extract_document(data, name, mime, 10_000)


async def test_a_long_document_is_cut_in_the_child_too() -> None:
    whole = "\n".join(f"Строка {n}" for n in range(1000))
    doc = await read_document(whole.encode(), "long.txt", None, 100)
    assert isinstance(doc, ExtractedDocument)
    assert doc.truncated and len(doc.text) <= 100 and doc.total_chars == len(whole)


async def test_the_child_gets_no_secret_of_the_bot_and_another_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The child parses hostile files: what it could leak must not include the bot's token, keys or passwords."""
    for name in ("POMOGATOR_BOT_TOKEN", "POMOGATOR_YOOKASSA_SECRET_KEY", "PGPASSWORD", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "secret-value")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.chdir(tmp_path)
    document = await read_document(b"plain text", "note.txt", "text/plain", 1000)
    assert document.text == "plain text"  # the real child still reads with that environment
    script = "import json, os; print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))"
    monkeypatch.setattr(isolated, "_CHILD", (sys.executable, "-c", script))
    process = await isolated.spawn()
    out, _ = await process.communicate(b"")
    seen = json.loads(out)
    assert "secret-value" not in json.dumps(seen["env"])
    assert seen["env"]["LC_ALL"] == "C.UTF-8"
    assert seen["env"]["PATH"] == os.environ["PATH"]
    assert seen["env"]["PYTHONPATH"].split(os.pathsep)[0] == isolated._SOURCE_ROOT
    assert seen["cwd"] == "/"


@pytest.mark.parametrize(
    ("data", "name", "error", "kind"),
    [
        (b"%PDF-1.7\nnot really a pdf", "broken.pdf", CorruptFile, None),
        (encrypt_pdf(make_pdf(["secret"]), "password", "owner"), "locked.pdf", EncryptedFile, None),
        (make_zip({"a.txt": b"inside"}), "files.zip", UnsupportedFile, "archive"),
        (make_png(), "chart.png", UnsupportedFile, "image"),
        (b"\x00\x01\x02binary" * 100, "data.txt", UnsupportedFile, "binary"),
        (b" \n\t\n", "notes.txt", EmptyFile, None),
    ],
    ids=["corrupt", "encrypted", "archive", "image", "binary", "empty"],
)
async def test_refusals_come_back_from_the_child_as_they_were_raised(
    data: bytes, name: str, error: type[Exception], kind: str | None
) -> None:
    with pytest.raises(error) as caught:
        await read_document(data, name, None, 1000)
    assert getattr(caught.value, "filename", None) == name
    assert getattr(caught.value, "kind", None) == kind


async def test_an_image_part_made_in_a_child_is_what_image_part_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_png()
    assert await read_image(data, "image/png", "chart.png") == image_part(data, "image/png", filename="chart.png")
    # Made there, not here: this process's decoder is never asked.
    monkeypatch.setattr(images, "image_part", lambda *args, **kwargs: pytest.fail("decoded in the bot's process"))
    assert (await read_image(data, "image/png", "chart.png"))["type"] == "image_url"


@pytest.mark.parametrize(
    ("data", "name", "error"),
    [
        (png_header(20_000, 20_000), "bomb.png", ImageTooLarge),
        (png_header(6_000, 6_000), "panorama.png", ImageTooLarge),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "broken.png", CorruptFile),
        (b"%PDF-1.7\n", "x.png", UnsupportedFile),
    ],
    ids=["bomb", "over-our-limit", "corrupt", "not-an-image"],
)
async def test_an_image_refused_in_the_child_is_refused_as_it_was_raised(
    data: bytes, name: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as here:
        image_part(data, "image/png", filename=name)
    with pytest.raises(error) as caught:
        await read_image(data, "image/png", name)
    assert getattr(caught.value, "filename", None) == name
    assert str(caught.value) == str(here.value)  # the limit and the dimensions came back with it
    assert vars(caught.value) == vars(here.value)


async def test_a_docx_too_large_unpacked_comes_back_from_the_child_with_its_name_and_size() -> None:
    styles = "".join(f'<w:style w:styleId="s{n}"/>' for n in range(2_000_000)).encode()
    data = make_zip({"word/document.xml": b"<w:document/>", "word/styles.xml": styles})
    with pytest.raises(UnpackedTooLarge) as caught:
        await read_document(data, "styles.docx", None, 1000)
    assert (caught.value.filename, caught.value.size) == ("styles.docx", len(styles))


async def test_text_the_child_cannot_send_as_json_is_repaired() -> None:
    # A lone surrogate in a file name (JSON from Telegram may carry one) must not break the pipe.
    doc = await read_document(b"hello", "bad\ud800name.txt", None, 100)
    assert doc.text == "hello" and doc.filename == "bad?name.txt"


# --- limits ---------------------------------------------------------------------------------------------------------


async def test_a_crafted_pdf_is_refused_at_the_time_limit_while_other_files_are_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spawned = recording_spawns(monkeypatch)
    bomb = shared_stream_pdf(200, SLOW_STREAM)
    assert len(bomb) < 100_000
    # Long enough for another file's child to start and read on a loaded machine; the crafted file (a second or
    # more per page, 200 pages) is far from done by then.
    limits = ReadLimits(timeout=6.0, pdf_time_budget=60.0)
    gaps: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(ticking(gaps, stop))
    started = time.monotonic()
    reading = asyncio.create_task(read_document(bomb, "report.pdf", "application/pdf", 10_000, limits=limits))
    # Its child first, so that it is ``processes[0]``.
    child_started = asyncio.create_task(spawned.started.wait())
    await asyncio.wait([child_started, reading], return_when=asyncio.FIRST_COMPLETED)
    child_started.cancel()
    assert spawned.started.is_set(), "the crafted file was read without a child"
    await asyncio.sleep(0.3)

    # Another user's file meanwhile: read at once, not after the crafted one.
    doc = await read_document("молоко\nхлеб\n".encode(), "покупки.txt", "text/plain", 1000)
    assert doc.text == "молоко\nхлеб\n"
    assert not reading.done()

    with pytest.raises(FileTooComplex) as caught:
        await reading
    elapsed = time.monotonic() - started
    stop.set()
    await ticker
    assert caught.value.filename == "report.pdf"
    # Refused at the limit, not after the reader's own budget (60 s) or the end of the file.
    assert limits.timeout <= elapsed < limits.timeout + 10
    assert spawned.processes[0].returncode == -signal.SIGKILL
    # The loop was never busy with the file: it runs in another process. Parsed on the loop, the file would block
    # it for the whole limit or longer; a loaded machine delays a tick by a fraction of a second, not by half the limit.
    assert max(gaps) < limits.timeout / 2


async def test_cancelling_a_reading_kills_its_child(monkeypatch: pytest.MonkeyPatch) -> None:
    spawned = recording_spawns(monkeypatch)
    bomb = shared_stream_pdf(200, SLOW_STREAM)
    reading = asyncio.create_task(read_document(bomb, "report.pdf", None, 10_000))
    await spawned.started.wait()
    await asyncio.sleep(0.3)
    started = time.monotonic()
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    # Killed at once, not left to run out its time limit (60 s); the margin is for a loaded machine.
    assert time.monotonic() - started < 10
    child = spawned.processes[0]
    assert child.returncode == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(child.pid, 0)


async def test_a_file_over_the_memory_limit_is_too_complex() -> None:
    data = "Строка текста\n".encode() * 700_000  # 17 MB: as text, with its copies, more than 64 MiB
    with pytest.raises(FileTooComplex) as caught:
        await read_document(data, "big.txt", None, 1000, limits=ReadLimits(memory_bytes=64 << 20))
    assert caught.value.filename == "big.txt"


async def test_an_unexpected_failure_of_the_child_is_an_error_with_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdin.buffer.read(); sys.exit('reader broke')",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    monkeypatch.setattr(isolated, "spawn", failing)
    with pytest.raises(RuntimeError, match="reader broke"):
        await read_document(b"hello", "a.txt", None, 100)


# --- the PDF reader's own caps -------------------------------------------------------------------------------------


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    return call(), time.monotonic() - started


def test_pages_over_pypdfs_limits_end_the_reading_fast() -> None:
    bomb = shared_stream_pdf(200, HUGE_STREAM, text_first=True)
    assert len(bomb) < 100_000
    doc, elapsed = timed(lambda: extract_document(bomb, "report.pdf", None, 100_000))
    assert elapsed < 10
    assert doc.text.startswith("--- page 1 ---\nHello")
    # The first page, then as many unreadable ones as the reader tries before giving up.
    assert doc.pages_read == 1 + pdf.MAX_UNREADABLE_PAGES
    assert doc.text.count(pdf.UNREADABLE_PAGE) == pdf.MAX_UNREADABLE_PAGES
    assert doc.truncated and doc.total_chars is None and doc.pages_total == 200


def test_a_pdf_of_pages_over_the_limits_is_too_complex_not_a_scan() -> None:
    bomb = shared_stream_pdf(200, HUGE_STREAM)
    with pytest.raises(FileTooComplex):
        extract_document(bomb, "report.pdf", None, 100_000)


def test_reading_stops_at_the_page_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf, "MAX_PAGES", 3)
    doc = extract_document(make_pdf([f"Page {n}" for n in range(1, 6)]), "book.pdf", None, 100_000)
    assert (doc.pages_read, doc.pages_total) == (3, 5)
    assert "Page 3" in doc.text and "Page 4" not in doc.text
    assert doc.truncated and doc.total_chars is None


def test_reading_stops_between_pages_when_the_time_is_up() -> None:
    doc = extract_document(make_pdf(["First", "Second", "Third"]), "a.pdf", None, 100_000, pdf_time_budget=0)
    assert doc.pages_read == 1 and "First" in doc.text and "Second" not in doc.text
    assert doc.truncated and doc.pages_total == 3
    # Nothing but blank pages by then: not a scan to send on, a file that takes too long.
    with pytest.raises(FileTooComplex):
        extract_document(blank_pdf(3), "scan.pdf", None, 100_000, pdf_time_budget=0)
