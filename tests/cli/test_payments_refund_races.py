"""``pomogator payments refund`` run twice at once on one payment, as two processes against the fake YooKassa: one
refund is made, whichever run stores its idempotence key first."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from pomogator.container import Services, build_services
from pomogator.store.tables import Payment
from tests.cli.helpers import Result, run_cli
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.yookassa_server import FakeYooKassa
from tests.web.support import ADMIN_ID, USER_ID, add_user, billing_env, billing_settings


@pytest.fixture
async def services(db_url: str, kassa: FakeYooKassa, tg: FakeTelegram) -> AsyncIterator[Services]:
    async with build_services(billing_settings(db_url, kassa, tg), migrate=True) as built:
        await add_user(built, tg)
        yield built


async def test_two_refund_runs_at_once_make_one_refund(
    services: Services, kassa: FakeYooKassa, tg: FakeTelegram, tmp_path: Path
) -> None:
    checkout = await services.billing.start_payment(USER_ID, "month")
    kassa.succeed(checkout.payment_id)
    await services.billing.sync_payment(checkout.payment_id)
    env = billing_env(services.settings, POMOGATOR_YOOKASSA_TIMEOUT="30")
    args = ("payments", "refund", checkout.payment_id, "--amount", "100", "--yes")

    # Both runs have read the payment's row (no refund asked for yet) before either goes on: YooKassa holds their
    # first requests, which come after it.
    kassa.hang = True
    asked = len(kassa.requests) + 2
    runs = [asyncio.create_task(run_cli(*args, cwd=tmp_path, env=env)) for _ in range(2)]
    await kassa.wait_for_requests(asked, timeout=30)
    # The refund asked for first is answered only after the other run has finished: that run cannot find it recorded.
    kassa.hold_answers = True
    kassa.hang = False
    await asyncio.wait(runs, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    kassa.hold_answers = False
    results: list[Result] = await asyncio.gather(*runs)

    assert [result.code for result in results] == [0, 0], [result.stderr for result in results]
    assert len(kassa.refunds) == 1
    assert len(kassa.refund_requests) == 2 and len({r.idempotence_key for r in kassa.refund_requests}) == 1
    said = sorted("Refunded 100.00 RUB" in result.stderr for result in results)
    assert said == [False, True]
    assert any("was already recorded (refunded in total: 100.00 RUB)" in result.stderr for result in results)
    row = await Payment.select().where(Payment.yookassa_id == checkout.payment_id).first()
    assert row is not None and Decimal(str(row["refunded_amount"])) == Decimal(100) and row["refund_key"] is None
    assert kassa.payments[checkout.payment_id]["refunded_amount"]["value"] == "100.00"
    assert len([t for t in tg.sent_texts(USER_ID) if t.startswith("↩️")]) == 1
    assert len([t for t in tg.sent_texts(ADMIN_ID) if t.startswith("↩️")]) == 1
