"""Bot test fixtures: a shared running bot per module, the bot's log printed for failed tests, and what a test left
scripted on a shared bot's fakes cleared before the next test."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.bot.harness import BotHarness, BotProcess


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def bot_log_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print what every bot process logged during a test that failed (pytest shows it with the failure)."""
    offsets = {process: process.log_size() for process in BotProcess.running}
    yield
    if not request.node.stash.get(_FAILED, False):
        return
    for process in list(BotProcess.running) + [p for p in offsets if p not in BotProcess.running]:
        text = process.log_since(offsets.get(process, 0))
        print(f"===== bot log ({process.log_path}) =====\n{text[-20000:]}")


class LeftoverWarning(UserWarning):
    """A test that passed left model actions, Telegram faults or held methods on a shared harness."""


@pytest.fixture(autouse=True)
def shared_harness_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Clear, after each test, what it scripted on a harness that outlives it and nothing used.

    A module's tests share one bot: an action or a fault a test queued and did not use (it failed, or timed out
    before its request came) would be taken by the next test's request and fail that test too. The leftovers are
    cleared and reported, not turned into a failure of their own: one failure stays one failure.
    """
    for harness in BotHarness.opened:
        harness.begin_test()
    yield
    left = [f"{item} (harness in {h.workdir})" for h in list(BotHarness.opened) for item in h.clear_leftovers()]
    if not left:
        return
    message = "cleared what the test left on a shared bot harness:\n  " + "\n  ".join(left)
    if request.node.stash.get(_FAILED, False):
        print(message)  # shown with the failure
        return
    # The suite turns warnings into errors; this one is only a report.
    with warnings.catch_warnings():
        warnings.simplefilter("always", LeftoverWarning)
        warnings.warn(f"{request.node.nodeid}: {message}", LeftoverWarning, stacklevel=1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    """One running bot on SQLite, shared by the tests of a module (each test uses its own chats)."""
    workdir: Path = tmp_path_factory.mktemp("bot")
    async with BotHarness.open(workdir) as h:
        yield h
