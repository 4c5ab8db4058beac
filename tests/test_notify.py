"""The plain Bot API sender of the processes without aiogram: it never raises, whatever answers it, and reads no
proxy variables."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from pomogator.notify import TelegramNotifier


class OddServer:
    """Answers ``sendMessage`` with the given (status, JSON text) pairs in turn, then with Telegram's success."""

    def __init__(self, answers: list[tuple[int, str]]) -> None:
        self.answers = answers
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.answers:
            status, text = self.answers.pop(0)
            return web.Response(status=status, text=text, content_type="application/json")
        return web.json_response({"ok": True, "result": {"message_id": 1}})


@pytest.fixture
async def served() -> AsyncIterator[tuple[OddServer, str]]:
    server = OddServer([])
    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("text", ['["bad gateway"]', '"down"', "42", '{"ok": false, "parameters": [1]}'])
async def test_an_answer_that_is_not_the_bot_apis_is_a_failure_not_an_exception(
    served: tuple[OddServer, str], text: str
) -> None:
    server, url = served
    server.answers = [(502, text)] * 3
    notifier = TelegramNotifier(url, "123:abc", pause=0.01)
    try:
        result = await notifier.send(42, "Премиум активен", attempts=3)
    finally:
        await notifier.close()
    assert not result.ok
    assert server.calls == (3 if not text.startswith("{") else 1)


async def test_an_odd_answer_is_tried_again_and_the_notice_delivered(served: tuple[OddServer, str]) -> None:
    server, url = served
    server.answers = [(502, '["bad gateway"]')]
    notifier = TelegramNotifier(url, "123:abc", pause=0.01)
    try:
        result = await notifier.send(42, "Премиум активен")
    finally:
        await notifier.close()
    assert result.ok
    assert server.calls == 2


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_proxy_variables_are_not_read(served: tuple[OddServer, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """They are the model client's (docs/deploy.md): a proxy there would have refused the connection."""
    server, url = served
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    notifier = TelegramNotifier(url, "123:abc", pause=0.01)
    try:
        result = await notifier.send(42, "Премиум активен", attempts=1)
    finally:
        await notifier.close()
    assert result.ok
    assert server.calls == 1
