"""An SQLite transaction cancelled at any point closes its connection, so no aiosqlite thread outlives it: such a
thread kept a stopping server from exiting."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from pomogator.store.engine import open_database
from pomogator.store.tables import User


def connection_threads(ignored: frozenset[threading.Thread] = frozenset()) -> list[threading.Thread]:
    """aiosqlite's connection threads of this process, but ``ignored`` (another test's, ending in its own time)."""
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name and t not in ignored]


async def test_a_transaction_cancelled_at_any_point_leaves_no_connection_open(tmp_path: Path) -> None:
    # The tests of one worker share its process: a connection another test closed may still be ending.
    others = frozenset(connection_threads())

    async def no_connection_thread_left() -> bool:
        for _ in range(250):
            if not connection_threads(others):
                return True
            await asyncio.sleep(0.02)
        return False

    async with open_database(f"sqlite:///{tmp_path / 'db.sqlite3'}") as database:
        assert connection_threads(others) == []
        entered = finished = 0

        async def write(number: int) -> None:
            nonlocal entered, finished
            async with database.transaction():
                entered += 1
                await User.insert(User(telegram_id=number))
            finished += 1

        # Each round lets the transaction run a little longer before it is cancelled: while the connection opens,
        # while BEGIN runs, in its body, while COMMIT runs, or not at all.
        for step in range(80):
            task = asyncio.create_task(write(step))
            for _ in range(step % 8):
                await asyncio.sleep(0)
            await asyncio.sleep(step // 8 * 0.0005)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert await no_connection_thread_left(), f"a connection was left open at step {step}"
        # The rounds reached the body, and at least the last ones let it finish.
        assert entered > 0
        await write(80)
        assert finished > 0 and await no_connection_thread_left()
