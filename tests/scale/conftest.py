"""A cluster of web instances in webhook mode, shared by the tests of a module; instance logs of failed tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator

import pytest
import pytest_asyncio

from tests.cli.helpers import clean_env, run_cli
from tests.conftest import POSTGRES_URL
from tests.scale.cluster import SECRET, TOKEN, Cluster

_FAILED = pytest.StashKey[bool]()
_running: list[Cluster] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def instance_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.node.stash.get(_FAILED, False):
        for cluster in _running:
            print(cluster.logs())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """Three instances on one PostgreSQL database and one Redis prefix, the webhook registered by the CLI."""
    if not POSTGRES_URL:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    workdir = tmp_path_factory.mktemp("cluster")
    async with Cluster.open(workdir, POSTGRES_URL) as opened:
        env = clean_env(
            POMOGATOR_BOT_TOKEN=TOKEN,
            POMOGATOR_TELEGRAM_API_URL=opened.tg.base_url,
            POMOGATOR_TELEGRAM_WEBHOOK_SECRET=SECRET,
        )
        result = await run_cli("bot", "set-webhook", opened.webhook_url, cwd=workdir, env=env)
        assert result.code == 0, result.stderr
        _running.append(opened)
        try:
            yield opened
        finally:
            _running.remove(opened)
