"""Read a user's document, or decode a photo, in a child process, with a wall-clock, a memory and a CPU limit.

pypdf (and any parser) on untrusted input can work for hours or take gigabytes: a few hundred kilobytes of crafted
PDF are enough. Read in a worker thread, such a file held a thread of the event loop's default executor (which the
heartbeat shares) for as long, and kept the bot from exiting on SIGTERM: a thread cannot be stopped. A child process
can: it is killed when its time is up, and when the reading is cancelled (a shutdown, for one).

Starting the child costs about 75 ms of CPU and wall-clock time for a text file and 150 ms for a PDF (pypdf with
its crypto provider imports in ~80 ms), and 20-60 MiB of memory while it lives; measured on the 2-CPU development
machine. Small next to the download from Telegram; the package's lazy imports (``__init__.py``) keep it so. A photo
costs 95-140 ms more than decoding it in this process would (a 1280x960 and a 4000x3000 JPEG; Pillow's import is most
of it); image decoders parse what anyone may send, so they run here too, away from the bot's secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from pomogator.errors import FileTooComplex

from .detect import sniff_signature
from .document import ExtractedDocument
from .extract import decode_image, decode_outcome, encode_request
from .pdf import TIME_BUDGET_S

READ_TIMEOUT_S = 60.0
"""Wall-clock time one document may take; then the child is killed and the file refused as too complex."""

MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
"""Address space of the child. A 20 MB document needs a few hundred megabytes at most; crafted PDFs asked for
gigabytes (and a bot-wide OOM kill) before."""

CPU_LIMIT_S = 60
"""CPU seconds of the child: it ends by itself even if its parent died before killing it."""

READ_SLOTS = 4
"""Children reading PDFs, DOCX files and other binary formats at once in one bot process; more wait for a slot.
Bounds the memory all of them may take. Text files (no binary signature) do not wait: decoding 20 MB of text takes
well under a second and a few hundred megabytes, so a few crafted PDFs cannot hold them up."""

# The directory that holds the ``pomogator`` package, so the child imports the same code as this process.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[3])
_CHILD = (sys.executable, "-c", "from pomogator.services.files.extract import serve; serve()")
# What the child keeps of this process's environment: what its interpreter and locale need. It parses hostile files,
# so the bot token, the API keys and the database's password stay out of its reach.
_CHILD_VARIABLES = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
_CHILD_PREFIXES = ("LC_", "PYTHON")
_TOO_COMPLEX_SIGNALS = (-signal.SIGKILL, -signal.SIGXCPU)  # the CPU limit, or the kernel's OOM killer

_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadLimits:
    """The limits of one reading: the bot's by default (tests pass smaller ones)."""

    timeout: float = READ_TIMEOUT_S
    memory_bytes: int = MEMORY_LIMIT_BYTES
    cpu_seconds: int = CPU_LIMIT_S
    pdf_time_budget: float = TIME_BUDGET_S


async def read_document(
    data: bytes,
    filename: str,
    mime_type: str | None,
    max_chars: int,
    *,
    limits: ReadLimits | None = None,
    vision: bool = False,
    max_picture_bytes: int | None = None,
) -> ExtractedDocument:
    """``extract_document`` in a child process; ``vision``: the pictures of a DOCX are read for a model that sees,
    no more than ``max_picture_bytes`` of them (what is left of the request's media budget: the pictures come back
    as base64 strings, which this process holds until the request is sent).

    Raises what ``extract_document`` raises, and ``FileTooComplex`` when the child runs out of time, memory or
    CPU. Cancelling the call kills the child; so does the timeout.
    """
    answer = await _in_child(
        data,
        filename,
        mime_type,
        limits or ReadLimits(),
        max_chars=max_chars,
        vision=vision,
        max_picture_bytes=max_picture_bytes,
    )
    return decode_outcome(answer)


async def read_image(
    data: bytes, mime_type: str | None, filename: str, *, limits: ReadLimits | None = None
) -> dict[str, Any]:
    """``images.image_part`` in a child process: a photo's decoders (JPEG, PNG, WebP, GIF, BMP, TIFF) parse what
    anyone may send, so they run where the bot's secrets are not. Raises what ``image_part`` raises, and
    ``FileTooComplex`` as ``read_document`` does."""
    return decode_image(await _in_child(data, filename, mime_type, limits or ReadLimits(), image=True))


async def _in_child(
    data: bytes,
    filename: str,
    mime_type: str | None,
    limits: ReadLimits,
    *,
    max_chars: int = 0,
    vision: bool = False,
    max_picture_bytes: int | None = None,
    image: bool = False,
) -> bytes:
    """What a child answered to its request (``encode_request``) to read ``data`` within ``limits``."""
    request = encode_request(
        data,
        filename,
        mime_type,
        max_chars,
        memory_bytes=limits.memory_bytes,
        cpu_seconds=limits.cpu_seconds,
        time_budget=limits.pdf_time_budget,
        vision=vision,
        max_picture_bytes=max_picture_bytes,
        image=image,
    )
    async with _slot_for(data):
        process = await spawn()
        try:
            async with asyncio.timeout(limits.timeout):
                out, err = await process.communicate(request)
        except TimeoutError:
            logger.info("Reading {!r} ({} bytes) took over {} s: refused", filename, len(data), limits.timeout)
            raise FileTooComplex(filename) from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it may have ended just now
                    process.kill()
                await process.wait()
    if process.returncode in _TOO_COMPLEX_SIGNALS:
        logger.info("Reading {!r} ({} bytes) was killed ({}): refused", filename, len(data), process.returncode)
        raise FileTooComplex(filename)
    if process.returncode != 0 or not out:
        tail = err[-2000:].decode("utf-8", errors="replace")
        raise RuntimeError(f"The document reader exited with {process.returncode}: {tail}")
    return out


def child_environment() -> dict[str, str]:
    """The child's environment: the interpreter's and the locale's variables of this process, no secrets."""
    kept = (key for key in os.environ if key in _CHILD_VARIABLES or key.startswith(_CHILD_PREFIXES))
    env = {key: os.environ[key] for key in kept}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _SOURCE_ROOT + (os.pathsep + path if path else "")
    return env


async def spawn() -> asyncio.subprocess.Process:
    """Start a child that reads one document (``extract.serve``)."""
    return await asyncio.create_subprocess_exec(
        *_CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=child_environment(),
        # Not the bot's working directory, which may hold its .env file: the child has nothing to read there.
        cwd="/",
        # Its own session: a Ctrl-C in the terminal reaches the bot, which ends the child itself.
        start_new_session=True,
    )


def _slot_for(data: bytes) -> contextlib.AbstractAsyncContextManager[object]:
    if sniff_signature(data) is None and b"%PDF-" not in data[:1024]:
        return contextlib.nullcontext()
    # One semaphore per event loop: an asyncio.Semaphore belongs to the loop it first waited in.
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(READ_SLOTS)
    return slots
