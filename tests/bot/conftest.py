"""Bot test fixtures: a shared running bot per module, and the bot's log printed for failed tests."""

from __future__ import annotations

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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BotHarness]:
    """One running bot on SQLite, shared by the tests of a module (each test uses its own chats)."""
    workdir: Path = tmp_path_factory.mktemp("bot")
    async with BotHarness.open(workdir) as h:
        yield h
