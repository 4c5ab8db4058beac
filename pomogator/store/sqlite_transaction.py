"""Piccolo's SQLite transaction, with its connection closed on every way out.

A transaction gets a connection of its own, which aiosqlite runs on a thread of its own, and that thread ends only
when the connection is closed. Piccolo's transaction leaves it open when the task is cancelled while the connection
opens, while ``BEGIN`` runs, or while ``COMMIT`` / ``ROLLBACK`` runs (a server stopping cancels its background jobs
and the answers cut off by the shutdown): the thread then kept the process from exiting, after "Bot stopped".
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from piccolo.engine.sqlite import SQLiteTransaction

# Closings started by a cancelled task, kept until they end (a task nothing refers to may be collected unfinished).
_closing: set[asyncio.Future[Any]] = set()


class ClosingSQLiteTransaction(SQLiteTransaction):
    async def get_connection(self) -> Any:
        opening = asyncio.ensure_future(super().get_connection())  # type: ignore[no-untyped-call]  # Piccolo's
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The connection goes on opening; it is closed as soon as it is open.
            opening.add_done_callback(_close_once_open)
            raise

    async def __aenter__(self) -> Any:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            await self.begin()  # type: ignore[no-untyped-call]  # Piccolo's
        except BaseException:
            await close_connection(self.connection)
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        try:
            ended: bool = await super().__aexit__(exception_type, exception, traceback)
        except BaseException:
            if self._parent is None:
                with contextlib.suppress(ValueError):  # set in another context: nothing to reset here
                    self.engine.current_transaction.reset(self.context)
                await close_connection(self.connection)
            raise
        return ended


async def close_connection(connection: Any) -> None:
    """Close an aiosqlite connection; a cancellation of the caller does not stop the closing. Never raises but
    CancelledError: the connection's own error, if any, is already what the caller raises about."""
    closing = _close(connection)
    with contextlib.suppress(Exception):
        await asyncio.shield(closing)


def _close(connection: Any) -> asyncio.Future[Any]:
    closing: asyncio.Future[Any] = asyncio.ensure_future(connection.close())
    _closing.add(closing)
    closing.add_done_callback(_forget)
    return closing


def _forget(closing: asyncio.Future[Any]) -> None:
    _closing.discard(closing)
    if not closing.cancelled():
        closing.exception()  # retrieved: a failed closing of a connection given up is not worth a warning


def _close_once_open(opening: asyncio.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _close(opening.result())
