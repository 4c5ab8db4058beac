"""How the process's HTTPS clients verify servers: where the authorities come from, and real HTTPS to the model and
the Bot API.

A test certificate authority and a server certificate for localhost/127.0.0.1 are made with the ``openssl``
command; the fake model serves HTTPS with them.
"""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp.connector
import certifi
import httpx
import pytest
from aiogram.exceptions import TelegramNetworkError

from pomogator import notify, tls
from pomogator.billing.yookassa import YooKassaClient, YooKassaConfig
from pomogator.bot.factory import create_bot
from pomogator.errors import LLMUnavailable, PaymentNotFound, PaymentProviderUnavailable
from pomogator.llm.client import Delta, LLMClient
from pomogator.notify import BotApi
from tests.conftest import TEST_API_KEY, make_settings
from tests.fakes import openai_server as fake
from tests.fakes.openai_server import FakeLLM

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


class Authority:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = directory / "ca.pem"
        self.cert = directory / "server.pem"
        self.key = directory / "server.key"

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def hashed_directory(self) -> Path:
        """A directory laid out as ``c_rehash`` leaves /etc/ssl/certs: the authority under its subject hash."""
        subject_hash = _openssl("x509", "-hash", "-noout", "-in", str(self.ca)).strip()
        hashed = self.directory / "hashed"
        hashed.mkdir(exist_ok=True)
        shutil.copy(self.ca, hashed / f"{subject_hash}.0")
        return hashed


def _openssl(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True, cwd=cwd).stdout


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    directory = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Pomogator Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=directory)
    (directory / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
        cwd=directory,
    )  # fmt: skip
    return Authority(directory)


@pytest.fixture(autouse=True)
def fresh_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The context is made once per process; each test reads the environment it sets up."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    tls.client_ssl.cache_clear()
    tls.ssl_context.cache_clear()
    yield
    tls.client_ssl.cache_clear()
    tls.ssl_context.cache_clear()


@pytest.fixture
async def https_llm(authority: Authority) -> Any:
    async with FakeLLM(api_key=TEST_API_KEY, host="localhost", ssl_context=authority.server_context()) as llm:
        yield llm


_REAL_PATHS = ssl.get_default_verify_paths()


def _system_paths(capath: str | None) -> ssl.DefaultVerifyPaths:
    return _REAL_PATHS._replace(capath=capath)  # type: ignore[arg-type]  # None: the system has no directory


# Where the authorities come from


def test_the_operators_bundle_or_directory_comes_first() -> None:
    assert tls.trust_locations({"SSL_CERT_FILE": "/etc/corp.pem"}) == ("/etc/corp.pem", None)
    assert tls.trust_locations({"SSL_CERT_DIR": "/etc/corp"}) == (None, "/etc/corp")
    assert tls.trust_locations({"SSL_CERT_FILE": "/a.pem", "SSL_CERT_DIR": "/b"}) == ("/a.pem", "/b")


def test_the_systems_store_is_aiohttps_default_context(authority: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed = authority.hashed_directory()
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: _system_paths(str(hashed)))
    assert tls.trust_locations({}) == (None, None)
    # No context of our own: aiohttp made its verified one from the system's store when it was imported.
    assert tls.client_ssl() is True
    assert not isinstance(tls.client_ssl(), ssl.SSLContext)
    # httpx needs the context itself: aiohttp's, not one more.
    assert tls.ssl_context() is aiohttp.connector._SSL_CONTEXT_VERIFIED


@pytest.mark.parametrize("capath", [None, "plain", "missing"])
def test_without_a_hashed_system_directory_certifi_is_used(
    capath: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if capath == "plain":
        (tmp_path / "ca-certificates.crt").write_text("")
    path = None if capath is None else str(tmp_path if capath == "plain" else tmp_path / "missing")
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: _system_paths(path))
    assert tls.trust_locations({}) == (certifi.where(), None)
    context = tls.client_ssl()
    assert isinstance(context, ssl.SSLContext)
    assert context.cert_store_stats()["x509_ca"] > 100


def test_one_context_verifies_hosts_and_certificates(authority: Authority, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    context = tls.client_ssl()
    assert isinstance(context, ssl.SSLContext)
    assert context is tls.client_ssl()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert tls.ssl_context() is context


# Real HTTPS


@pytest.mark.parametrize("how", ["file", "directory"])
async def test_the_model_is_reached_over_https_with_the_operators_authority(
    how: str, authority: Authority, https_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "file":
        monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    else:
        monkeypatch.setenv("SSL_CERT_DIR", str(authority.hashed_directory()))
    client = _client(https_llm)
    try:
        https_llm.enqueue(fake.Reply(text="over TLS"))
        events = [event async for event in client.stream("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], 50)]
        assert "".join(event.text for event in events if isinstance(event, Delta)) == "over TLS"
    finally:
        await client.close()


async def test_a_server_no_trusted_authority_signed_is_refused(https_llm: FakeLLM) -> None:
    client = _client(https_llm)
    try:
        with pytest.raises(LLMUnavailable):
            [event async for event in client.stream("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], 50)]
        assert https_llm.request_count == 0
    finally:
        await client.close()


@pytest.mark.parametrize("trusted", [True, False])
async def test_the_bot_api_client_shares_the_context(
    trusted: bool, authority: Authority, https_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    # Any HTTPS server does: what matters is whether the handshake succeeds (the fake model has no getMe).
    bot = create_bot(make_settings(bot_token="123:ABC", telegram_api_url=https_llm.url))
    try:
        with pytest.raises(Exception) as caught:
            await bot.get_me()
        assert isinstance(caught.value, TelegramNetworkError) is not trusted
        if isinstance(caught.value, TelegramNetworkError):
            assert "certificate" in caught.value.message.lower()
    finally:
        await bot.session.close()


@pytest.mark.parametrize("trusted", [True, False])
async def test_the_plain_bot_api_client_shares_the_context(
    trusted: bool, authority: Authority, https_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web app's notices and the ``bot`` commands: httpx reading no environment would trust certifi alone."""
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    async with BotApi(https_llm.url, "123:ABC", timeout=10.0) as api:
        if trusted:
            response = await api.post("getMe", {})
            assert response.status_code == 404  # through the handshake: the fake model has no getMe
        else:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await api.post("getMe", {})


async def test_the_plain_bot_api_client_verifies_with_the_process_context_alone(
    authority: Authority, https_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the process trusts (here an authority no variable names), not what httpx would choose."""
    context = ssl.create_default_context(cafile=authority.ca)
    monkeypatch.setattr(notify, "ssl_context", lambda: context)
    async with BotApi(https_llm.url, "123:ABC", timeout=10.0) as api:
        assert (await api.post("getMe", {})).status_code == 404


@pytest.fixture
def https_404(authority: Authority) -> Iterator[str]:
    """A blocking HTTPS server answering 404 to everything, on a thread: the payment client is blocking too."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    server.socket = authority.server_context().wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("trusted", [True, False])
async def test_the_payment_client_shares_the_authorities(
    trusted: bool, authority: Authority, https_404: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The YooKassa SDK's requests would trust certifi's bundle alone, whatever the process trusts."""
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca))
    client = YooKassaClient(YooKassaConfig("shop", "secret", https_404, timeout=10.0))
    # Through the handshake, the server knows no payments; without it, YooKassa "did not answer".
    expected = PaymentNotFound if trusted else PaymentProviderUnavailable
    with pytest.raises(expected) as caught:
        await client.get_payment("payment-1")
    assert trusted or "SSLError" in str(caught.value)


def _client(llm: FakeLLM) -> LLMClient:
    return LLMClient(
        base_url=llm.base_url,
        api_key=TEST_API_KEY,
        timeout=10.0,
        max_retries=0,
        app_url="https://example.org/app",
        app_title="Title",
    )
