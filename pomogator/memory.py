"""Memory freed after a burst of work goes back to the system.

glibc's malloc keeps what is freed in its heap for reuse and gives back only a free top of the heap on its own. A
burst of large allocations (long contexts read and sent, ~0.3-0.7 MB a message) leaves the heap fragmented and the
process at its peak: after 200 chats with 200-turn contexts the bot stayed at 377-395 MiB once idle, against 194
before the load. ``malloc_trim`` gives the free pages back (down to ~250 MiB there) in 2-10 ms. The servers call it
every ``POMOGATOR_MEMORY_TRIM_SECONDS``; where the C library has no ``malloc_trim`` (not glibc) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable

from loguru import logger


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


async def keep_trimming(interval: float) -> None:
    """Give free heap memory back every ``interval`` seconds (0: never) until cancelled. The call runs on a thread
    of its own: it holds the C heap's lock, not the interpreter's."""
    trim = malloc_trim()
    if trim is None or interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(trim, 0)
        except RuntimeError:  # the default executor is shutting down with the loop
            return
        except Exception:
            logger.opt(exception=True).warning("Could not give free memory back to the system")
