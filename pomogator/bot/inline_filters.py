"""Handler filters run on the event loop.

aiogram runs a filter that is a plain function — a magic filter such as ``F.text.startswith("/")``, a ``State`` —
in a worker thread (``asyncio.to_thread``): a thread hop, and a wake-up of the event loop, for every such filter of
every handler an update is checked against before one matches. Pomogator's filters only look at the update, so
they are run inline instead; a filter that blocks must be written as a coroutine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiogram import Router
from aiogram.dispatcher.event.handler import FilterObject


def run_filters_inline(routers: Iterable[Router]) -> None:
    """Make every synchronous filter of ``routers`` (their sub-routers and router-level filters included) a
    coroutine that calls it directly. Idempotent."""
    for root in routers:
        for router in root.chain_tail:
            for observer in router.observers.values():
                for handler in [observer._handler, *observer.handlers]:
                    for event_filter in handler.filters or ():
                        _inline(event_filter)


def _inline(event_filter: FilterObject) -> None:
    if event_filter.awaitable:
        return
    check: Callable[..., Any] = event_filter.callback

    async def inline(*args: Any, **kwargs: Any) -> Any:
        return check(*args, **kwargs)

    # The parameters aiogram passes were read from the original callback's signature and stay as they are.
    event_filter.callback = inline
    event_filter.awaitable = True
