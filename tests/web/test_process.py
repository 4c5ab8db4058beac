"""``pomogator run web`` as a real process: the payment flow end to end, and a database outage answered with 5xx."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from pomogator.container import build_services
from tests.conftest import POSTGRES_URL
from tests.databases import throwaway_postgres
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import (
    USER_ID,
    WEBHOOK,
    WebProcess,
    add_user,
    billing_env,
    billing_settings,
)

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
async def own_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of this test's own (a web process must not share the truncated ``test`` database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'web.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    async with throwaway_postgres(POSTGRES_URL, "pomogator_web", migrate=False) as url:
        yield url


@pytest.fixture
def processes() -> Iterator[list[WebProcess]]:
    started: list[WebProcess] = []
    yield started
    for process in started:
        if process.process is not None and process.process.returncode is None:
            process.process.kill()


async def test_pay_and_get_confirmed_through_the_web_process(
    own_db_url: str, kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path, processes: list[WebProcess]
) -> None:
    settings = billing_settings(own_db_url, kassa, tg)
    async with build_services(settings, migrate=True) as services:
        await add_user(services, tg)
        web = await WebProcess(billing_env(settings), tmp_path).start()
        processes.append(web)
        # What the bot does when the user presses «Месяц — 599 ₽».
        checkout = await services.billing.start_payment(USER_ID, "month")
        async with httpx.AsyncClient() as client:
            assert (await client.get(web.url + "/healthz")).status_code == 200
            paid = await client.get(checkout.confirmation_url)  # the user pays on the checkout page
            assert paid.status_code == 200
        assert await kassa.send_notification(web.url + WEBHOOK, "payment.succeeded", checkout.payment_id) == 200
        message = await tg.wait_for_message(USER_ID, lambda m: "получена" in (m.text or ""), after_message_id=0)
        until = await services.subscriptions.premium_until(USER_ID)
        assert until is not None
        assert until.astimezone(settings.tz).strftime("%d.%m.%Y %H:%M") in (message.text or "")
        assert (await services.users.get(USER_ID)).premium
        # A replay later changes nothing.
        assert await kassa.send_notification(web.url + WEBHOOK, "payment.succeeded", checkout.payment_id) == 200
        assert await services.subscriptions.premium_until(USER_ID) == until
    # uvicorn shuts down gracefully, then re-raises SIGTERM: the server exits with 128 + SIGTERM.
    assert await web.stop() in (0, 143)
    log = web.log()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
    assert kassa.secret_key not in log
    assert tg.token not in log
    assert checkout.confirmation_url.split("token=")[1] not in log


async def test_a_database_outage_answers_5xx_and_yookassas_retry_succeeds(
    own_db_url: str, kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path, processes: list[WebProcess]
) -> None:
    settings = billing_settings(own_db_url, kassa, tg)
    proxy: TcpProxy | None = None
    web_db_url = own_db_url
    if own_db_url.startswith("postgresql://"):
        proxy = TcpProxy("127.0.0.1", 5432).start()
        web_db_url = own_db_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
        assert web_db_url != own_db_url
    database_file = Path(own_db_url.removeprefix("sqlite:///"))

    def cut() -> None:
        if proxy is not None:
            proxy.cut()
        else:
            os.rename(database_file, database_file.with_suffix(".away"))
            database_file.mkdir()  # sqlite cannot open a directory: "unable to open database file"

    def restore() -> None:
        if proxy is not None:
            proxy.restore()
        else:
            shutil.rmtree(database_file)
            os.rename(database_file.with_suffix(".away"), database_file)

    try:
        async with build_services(settings, migrate=True) as services:
            await add_user(services, tg)
            checkout = await services.billing.start_payment(USER_ID, "month")
        env = billing_env(settings, POMOGATOR_DATABASE_URL=web_db_url, POMOGATOR_DATABASE_RECONNECT_SECONDS="1")
        web = await WebProcess(env, tmp_path).start()
        processes.append(web)
        kassa.succeed(checkout.payment_id)

        cut()
        status = await kassa.send_notification(web.url + WEBHOOK, "payment.succeeded", checkout.payment_id)
        assert status == 503
        async with httpx.AsyncClient() as client:
            assert (await client.get(web.url + "/healthz")).status_code == 503
        restore()

        assert await kassa.send_notification(web.url + WEBHOOK, "payment.succeeded", checkout.payment_id) == 200
        await tg.wait_for_message(USER_ID, lambda m: "получена" in (m.text or ""), after_message_id=0)
        async with build_services(settings) as services:
            assert await services.subscriptions.premium_until(USER_ID) is not None
        assert await web.stop() in (0, 143)
        log = web.log()
        assert "Request to /webhooks/yookassa not served, the database is unavailable" in log
        assert "Traceback" not in log
    finally:
        if proxy is not None:
            proxy.close()


async def test_a_notification_sent_while_postgresql_restarts_is_applied_at_once(
    kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path, processes: list[WebProcess]
) -> None:
    if not POSTGRES_URL:
        pytest.skip("POMOGATOR_TEST_POSTGRES_URL is not set")
    async with throwaway_postgres(POSTGRES_URL, "pomogator_web", migrate=False) as own_db_url:
        settings = billing_settings(own_db_url, kassa, tg)
        proxy = TcpProxy("127.0.0.1", 5432).start()
        try:
            async with build_services(settings, migrate=True) as services:
                await add_user(services, tg)
                checkout = await services.billing.start_payment(USER_ID, "month")
            env = billing_env(settings, POMOGATOR_DATABASE_URL=proxy.url(own_db_url))
            web = await WebProcess(env, tmp_path).start()
            processes.append(web)
            kassa.succeed(checkout.payment_id)
            proxy.cut()
            notified = asyncio.create_task(
                kassa.send_notification(web.url + WEBHOOK, "payment.succeeded", checkout.payment_id)
            )
            await asyncio.sleep(1.5)
            assert not notified.done()  # waiting for the database, not refused
            proxy.restore()
            assert await notified == 200
            await tg.wait_for_message(USER_ID, lambda m: "получена" in (m.text or ""), after_message_id=0)
            async with build_services(settings) as services:
                assert await services.subscriptions.premium_until(USER_ID) is not None
            assert await web.stop() in (0, 143)
            assert "Traceback" not in web.log()
        finally:
            proxy.close()


async def test_the_web_process_starts_without_yookassa_and_a_bot_token(
    tmp_path: Path, processes: list[WebProcess]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POMOGATOR_")}
    env.update(POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}")
    web = await WebProcess(env, tmp_path).start(timeout=20)
    processes.append(web)
    async with httpx.AsyncClient() as client:
        assert (await client.get(web.url + "/healthz")).status_code == 200
        assert (await client.post(web.url + WEBHOOK, json={"type": "notification"})).status_code == 404
    await web.stop()
    log = web.log()
    assert log.count("YooKassa is not configured: payments are off") == 1
    assert "POMOGATOR_BOT_TOKEN is not set: premium reminders are off" in log


async def test_the_web_process_taking_payments_needs_the_bot_token(tmp_path: Path) -> None:
    """Payers are told by the bot that their payment went through: a shop without a bot token is refused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POMOGATOR_")}
    env.update(
        POMOGATOR_DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}",
        POMOGATOR_YOOKASSA_SHOP_ID="1",
        POMOGATOR_YOOKASSA_SECRET_KEY="s",
    )
    web = WebProcess(env, tmp_path)
    with pytest.raises(RuntimeError) as failed:
        await web.start(timeout=20)
    assert "POMOGATOR_BOT_TOKEN is not set." in str(failed.value)
    assert "Traceback" not in str(failed.value)


@pytest.mark.parametrize(("proxies", "expected"), [("", 403), ("127.0.0.1", 200)])
async def test_the_server_believes_forwarded_addresses_only_from_configured_proxies(
    kassa: FakeYooKassa,
    tg: FakeTelegram,
    tmp_path: Path,
    processes: list[WebProcess],
    proxies: str,
    expected: int,
) -> None:
    settings = billing_settings(
        f"sqlite:///{tmp_path / 'web.sqlite3'}",
        kassa,
        tg,
        yookassa_trusted_networks="185.71.76.0/27",
        web_trusted_proxies=proxies,
    )
    web = await WebProcess(billing_env(settings), tmp_path).start()
    processes.append(web)
    unknown = {"type": "notification", "event": "payment.succeeded", "object": {"id": "2f0e6ff9-000f-5000-8000-1"}}
    async with httpx.AsyncClient() as client:
        response = await client.post(web.url + WEBHOOK, json=unknown, headers={"X-Forwarded-For": "185.71.76.1"})
    # uvicorn's own default would trust X-Forwarded-For from 127.0.0.1 and let this through.
    assert response.status_code == expected
    await web.stop()


async def test_an_idle_connection_from_the_proxy_stays_open_for_its_next_request(
    kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path, processes: list[WebProcess]
) -> None:
    """uvicorn's default closed connections idle for 5 s, while proxies reuse theirs for a minute or two: a request
    sent into one the app was closing failed (502)."""
    settings = billing_settings(f"sqlite:///{tmp_path / 'web.sqlite3'}", kassa, tg)
    web = await WebProcess(billing_env(settings), tmp_path).start()
    processes.append(web)
    reader, writer = await asyncio.open_connection("127.0.0.1", web.port)
    try:
        request = b"GET /healthz HTTP/1.1\r\nHost: bot.example.com\r\n\r\n"
        writer.write(request)
        assert await read_status(reader) == 200
        await asyncio.sleep(6.5)
        writer.write(request)
        assert await read_status(reader) == 200
    finally:
        writer.close()
    await web.stop()


async def read_status(reader: asyncio.StreamReader) -> int:
    """One HTTP/1.1 response from ``reader`` (its body read too); its status, or 0 when the server closed instead."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except asyncio.IncompleteReadError:
        return 0
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return int(lines[0].split()[1])
