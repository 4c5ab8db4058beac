"""Admin alerts: a Telegram message to ``POMOGATOR_ADMIN_IDS`` when something needs a person.

How other code raises one (any module, any thread; it is also an ordinary log record, stored like the others)::

    from pomogator.logs import alerts

    alerts.notify(alerts.LLM_ACCOUNT, f"OpenRouter refused the key: {exc.detail}")
    alerts.notify(alerts.PAYMENT, f"Payment {payment_id} failed verification: {reason}")

which is the same as logging a record with the ``alert`` extra: ``logger.bind(alert="payment").error(...)``.
Records whose exception is an ``LLMAccountProblem`` or a ``PaymentNotVerified`` alert by themselves, and so does a
spike of ERROR records (``SPIKE_THRESHOLD`` within ``SPIKE_WINDOW_S``).

Admins get a message only when a bot token and admin ids are configured, and at most one per kind per
``COOLDOWN_S``; the next one after a quiet period says how many were held back.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from loguru import logger

from pomogator.errors import LLMAccountProblem, PaymentNotVerified
from pomogator.logs.records import process_of

if TYPE_CHECKING:
    from loguru import Message, Record

    from pomogator.logs.redact import Redactor

ALERT_KEY = "alert"
ERRORS = "errors"
LLM_ACCOUNT = "llm_account"
MODEL_GONE = "model_gone"
# A model of the catalog refused in the country the bot's requests come from.
MODEL_REGION = "model_region"
PAYMENT = "payment"
DATABASE_DOWN = "database_down"
DATABASE_BACK = "database_back"

COOLDOWN_S = 300.0
SPIKE_THRESHOLD = 10
SPIKE_WINDOW_S = 60.0
SEND_TIMEOUT_S = 30.0
MAX_ALERT_CHARS = 3500
ERROR_LEVEL_NO = 40

EXCEPTION_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (LLMAccountProblem, LLM_ACCOUNT),
    (PaymentNotVerified, PAYMENT),
)

_delivering: contextvars.ContextVar[bool] = contextvars.ContextVar("pomogator_alert_delivering", default=False)

Send = Callable[[str], Awaitable[None]]


def notify(kind: str, text: str, *, level: str = "ERROR") -> None:
    """Log ``text`` as an alert of ``kind`` (``LLM_ACCOUNT``, ``PAYMENT`` or your own short word).

    Never raises and never waits: delivery happens in the background, rate-limited per kind. ``level`` must be
    WARNING or above (the alert sink does not see lower levels).
    """
    logger.opt(depth=1).bind(**{ALERT_KEY: kind}).log(level, "{}", text)


def alert_kind(record: Record) -> str | None:
    """The alert a record asks for: its ``alert`` extra, or what its exception means."""
    kind = record["extra"].get(ALERT_KEY)
    if kind:
        return str(kind)
    exception = record["exception"]
    if exception is not None and exception.value is not None:
        for exc_type, exc_kind in EXCEPTION_KINDS:
            if isinstance(exception.value, exc_type):
                return exc_kind
    return None


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    cooldown: float = COOLDOWN_S
    spike_threshold: int = SPIKE_THRESHOLD
    spike_window: float = SPIKE_WINDOW_S
    clock: Callable[[], float] = time.monotonic


DEFAULT_POLICY = AlertPolicy()


class AlertSink:
    """A loguru sink that decides (under a lock, in the logging thread) and delivers (on the event loop)."""

    def __init__(self, send: Send, redactor: Redactor, policy: AlertPolicy = DEFAULT_POLICY) -> None:
        self._send = send
        self._redactor = redactor
        self.policy = policy
        self._lock = threading.Lock()
        self._errors: deque[float] = deque()
        self._last_sent: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def write(self, message: Message) -> None:
        record = message.record
        if _delivering.get():
            return
        text = self._decide(record)
        if text is not None:
            self._schedule(text)

    def _decide(self, record: Record) -> str | None:
        """The alert's text if one should be sent now; counts held-back alerts per kind."""
        kind = alert_kind(record)
        summary = self._summary(record)
        with self._lock:
            now = self.policy.clock()
            if kind is None:
                if record["level"].no < ERROR_LEVEL_NO:
                    return None
                self._errors.append(now)
                while self._errors and self._errors[0] <= now - self.policy.spike_window:
                    self._errors.popleft()
                if len(self._errors) < self.policy.spike_threshold:
                    return None
                kind = ERRORS
                summary = f"{len(self._errors)} errors within {self.policy.spike_window:.0f} s. Latest: {summary}"
                self._errors.clear()
            last = self._last_sent.get(kind)
            if last is not None and now - last < self.policy.cooldown:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return None
            self._last_sent[kind] = now
            held_back = self._suppressed.pop(kind, 0)
        text = f"⚠️ Pomogator ({process_of(record)}): {kind}\n{summary}"
        if held_back:
            text += f"\n(+{held_back} more of this kind held back since the previous alert)"
        return text[:MAX_ALERT_CHARS]

    def _summary(self, record: Record) -> str:
        text = self._redactor.text(record["message"])
        exception = record["exception"]
        if exception is not None and exception.type is not None:
            # LLM errors keep the provider's own words in ``detail`` (their text is the user-facing message).
            said = getattr(exception.value, "detail", "") or str(exception.value)
            detail = self._redactor.text(f"{exception.type.__name__}: {said}")
            text = f"{text}\n{detail}" if text else detail
        return text

    def _schedule(self, text: str) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._spawn(text)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._spawn, text)

    def _spawn(self, text: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        task = loop.create_task(self._deliver(text), name="pomogator-alert")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, text: str) -> None:
        # Whatever delivery logs (an undelivered notice, httpx) must not raise alerts of its own.
        _delivering.set(True)
        try:
            await asyncio.wait_for(self._send(text), SEND_TIMEOUT_S)
        except Exception as exc:  # an alert that cannot be sent must not take the program down
            logger.warning("Admin alert not delivered: {}", type(exc).__name__)
        else:
            self.delivered += 1

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (a bound on pending deliveries)
        """Give alerts in flight ``timeout`` seconds to be delivered, then cancel them."""
        self._loop = None
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
