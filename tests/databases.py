"""Throwaway PostgreSQL databases: made on a server for one test (or one benchmark run) and dropped after it, for
processes that must not share the session's database other tests truncate. Made and dropped through the server's
``postgres`` maintenance database, so the database a server URL names need not exist."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pomogator.store.engine import Database


def database_at(url: str, name: str, port: int | None = None) -> str:
    """``url`` naming database ``name`` instead (and, with ``port``, that port of the same host)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if port is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{netloc.rsplit(':', 1)[0]}:{port}" if ":" in host else f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, f"/{name}", parts.query, parts.fragment))


async def run_on_server(server_url: str, statement: str) -> None:
    """Run ``statement`` (``CREATE DATABASE``, ``DROP DATABASE``) on the server of ``server_url``, in its ``postgres``
    maintenance database."""
    admin = await asyncpg.connect(database_at(server_url, "postgres"))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def throwaway_postgres(server_url: str, prefix: str, *, migrate: bool = True) -> AsyncIterator[str]:
    """A new database, named ``prefix`` and a random suffix, on the server of ``server_url`` (made through its
    ``postgres`` database), migrated unless ``migrate`` is false; dropped at exit, connections and all. Yields its
    URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await run_on_server(server_url, f'CREATE DATABASE "{name}"')
    url = database_at(server_url, name)
    try:
        if migrate:
            database = Database(url)
            await database.start(migrate=True)
            await database.close()
        yield url
    finally:
        await run_on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
