"""Request bodies read up to a limit: a sender that sends more is refused before all of it is in memory."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request[Any], limit: int) -> bytes:
    """The request's body; raises BodyTooLarge as soon as more than ``limit`` bytes have come."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge()
    return bytes(body)
