"""Plain data types exchanged with the YooKassa wrapper (no SDK import, so services can use them freely)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeGuard

# A payment's status as stored: YooKassa's (pending, succeeded, canceled) and our own.
SUCCEEDED = "succeeded"
CANCELED = "canceled"
PENDING = "pending"
NEW = "new"
ERROR = "error"
FAILED = "failed"
UNVERIFIED = "unverified"
STATUSES = (NEW, ERROR, FAILED, PENDING, SUCCEEDED, CANCELED, UNVERIFIED)

CENT = Decimal("0.01")

# A YooKassa payment's or refund's id (its ids are UUID-like); anything else is not asked about.
OBJECT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_object_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and OBJECT_ID_RE.fullmatch(value) is not None


def money(value: Decimal) -> str:
    """An amount as YooKassa writes it: ``"599.00"``."""
    return str(value.quantize(CENT))


@dataclass(frozen=True, slots=True)
class ReceiptSpec:
    """A 54-FZ receipt with one item: the whole payment for a service, paid in full."""

    email: str
    description: str
    vat_code: int
    tax_system_code: int | None = None


@dataclass(frozen=True, slots=True)
class RemotePayment:
    """A payment as the YooKassa API describes it."""

    id: str
    status: str
    amount: Decimal
    currency: str
    metadata: Mapping[str, str]
    paid: bool = False
    confirmation_url: str | None = field(default=None, repr=False)
    refunded_amount: Decimal = Decimal(0)
    cancellation_party: str | None = None
    cancellation_reason: str | None = None
    # The object exactly as the API returned it, stored with our payment row for accounting.
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RemoteRefund:
    """A refund as the YooKassa API describes it."""

    id: str
    payment_id: str
    status: str
    amount: Decimal
    currency: str
