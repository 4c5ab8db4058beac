"""Lining up the processes of a race test so that they do race, however loaded the machine is."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Far longer than lining up takes on a loaded machine; a wait this long means some process never came, and the race
# may not have happened (``Race.lined_up``).
WAIT_S = 10.0


class Race:
    """Processes run at once that may each claim a notice, the claim making it theirs to send (``notice``)."""

    def __init__(self, *processes: Coroutine[Any, Any, Any]) -> None:
        self._processes = processes
        self._entrant: ContextVar[int | None] = ContextVar("entrant", default=None)
        self._notices: list[NoticeRace] = []

    def notice(self) -> NoticeRace:
        """A notice the processes contend for."""
        notice = NoticeRace(len(self._processes), self._entrant)
        self._notices.append(notice)
        return notice

    async def run(self) -> list[Any]:
        """Run the processes at once; their results."""
        return await asyncio.gather(*(self._enter(number, process) for number, process in enumerate(self._processes)))

    @property
    def lined_up(self) -> bool:
        """Whether every wait ended with all the processes come: otherwise the race may not have happened."""
        return all(notice.lined_up for notice in self._notices)

    async def _enter(self, number: int, process: Coroutine[Any, Any, Any]) -> Any:
        self._entrant.set(number)
        try:
            return await process
        finally:
            for notice in self._notices:
                notice.ended(number)


class _Phase:
    """Which of the racing processes have passed one point (or ended without reaching it)."""

    def __init__(self, entrants: int) -> None:
        self.entrants = entrants
        self.passed: set[int] = set()
        self.all_passed = asyncio.Event()

    def pass_(self, entrant: int) -> None:
        self.passed.add(entrant)
        if len(self.passed) >= self.entrants:
            self.all_passed.set()

    async def wait(self) -> bool:
        """Wait until every process has passed; False when one had not after ``WAIT_S``."""
        try:
            await asyncio.wait_for(self.all_passed.wait(), WAIT_S)
        except TimeoutError:
            return False
        return True


class NoticeRace:
    """One notice the processes of a race contend for, lined up so that they do: it is sent (``all_tried``, from the
    sender) only once every process has tried the claim (``claim`` wraps it), or ended without trying (it found the
    notice taken). So each loser tries while the winner holds the claim and has not marked the notice sent, and only
    the claim keeps it from sending the notice too. Processes that first look for the notices owed (a list, then a
    claim of each) may be made to look before any claims (``look``, ``claim(after_looks=True)``): one that looked
    after the winner's claim would not even try.

    A sleep lines them up on an idle machine only; a barrier at the send would wait for the losers, which never reach
    it."""

    def __init__(self, entrants: int, entrant: ContextVar[int | None]) -> None:
        self._entrant = entrant
        self._looked = _Phase(entrants)
        self._tried = _Phase(entrants)
        self.lined_up = True

    def look(self, look: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """``look``, after which the process calling it has looked for the notices owed."""

        async def looked(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await look(*args, **kwargs)
            finally:
                self._passed(self._looked)

        return looked

    def claim(self, claim: Callable[P, Awaitable[T]], *, after_looks: bool = False) -> Callable[P, Awaitable[T]]:
        """``claim``, after which the process calling it has tried to claim the notice; with ``after_looks``, tried
        only once every process has looked."""

        async def tried(*args: P.args, **kwargs: P.kwargs) -> T:
            if after_looks:
                await self._wait(self._looked)
            try:
                return await claim(*args, **kwargs)
            finally:
                self._passed(self._tried)

        return tried

    async def all_tried(self) -> None:
        """Wait until every process has tried the claim (or ended)."""
        await self._wait(self._tried)

    def ended(self, entrant: int) -> None:
        self._looked.pass_(entrant)
        self._tried.pass_(entrant)

    def _passed(self, phase: _Phase) -> None:
        entrant = self._entrant.get()
        if entrant is not None:  # None: a call from outside the race
            phase.pass_(entrant)

    async def _wait(self, phase: _Phase) -> None:
        if self._entrant.get() is None:
            return  # nothing to line up with outside the race
        if not await phase.wait():
            self.lined_up = False
