"""``python -m benchmarks.opening --postgres-url URL``: what the first database step of a chat message costs the bot
on PostgreSQL, by the two ways the code has:

* one statement (``ChatService.stream_sender_reply``: the sender's upsert, the reservation and the context read);
* the upsert (``UserService.touch``), then the reservation with the context read (``ChatService.stream_reply``),
  as files, SQLite and a stored model that needs a reset go.

Both run in one process against the same database, in alternating rounds, so the machine's changes of speed fall on
both alike. Each round opens ``--messages`` messages of ``--senders`` senders who each have a context of
``--turns`` stored turns, one message at a time (no concurrency: the figure is the cost, not the throughput). Prints
the process CPU and the wall time per message of each way, and the round trips each made (a counting proxy).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.pgproxy import CountingProxy
from benchmarks.run import _host_port, database_url
from pomogator.config import Settings
from pomogator.container import Services, build_services
from pomogator.services.conversations import encode_content
from pomogator.services.opening import MessageOpener
from pomogator.services.users import Person
from pomogator.store.tables import DialogMessage
from tests.databases import database_at

QUOTA = 1_000_000


def _models_file(path: Path) -> Path:
    """The built-in catalog (its size is the statement's), with quotas the benchmark never reaches."""
    text = resources.files("pomogator.llm").joinpath("models.toml").read_text("utf-8")
    text = re.sub(r"(?m)^(free_daily|premium_daily) = \d+", rf"\1 = {QUOTA}", text)
    path.write_text(text, "utf-8")
    return path


async def _seed(services: Services, senders: list[int], turns: int) -> None:
    for sender in senders:
        await services.users.touch(Person(sender, "Bench"))
        if turns:
            await DialogMessage.insert(
                *(
                    DialogMessage(
                        telegram_id=sender,
                        role="user" if i % 2 == 0 else "assistant",
                        content=encode_content(f"turn {i} " * 20),
                        tokens=40,
                        model=services.catalog.default_id,
                    )
                    for i in range(turns)
                )
            )


async def _one_statement(services: Services, person: Person) -> None:
    opened = await MessageOpener(services.catalog, services.quota).open(person)
    assert opened is not None and opened.used is not None


async def _two_statements(services: Services, person: Person) -> None:
    account = await services.users.touch(person)
    reservation, _ = await services.chat.reserve_and_read(account.telegram_id, account.model, account.premium)
    assert reservation.used > 0


async def _measure(
    way: Callable[[Services, Person], Awaitable[None]], services: Services, people: list[Person]
) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for person in people:
        await way(services, person)
    return (time.process_time() - cpu) / len(people), (time.perf_counter() - wall) / len(people)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        async with (
            database_url("postgres", Path(workdir), args.postgres_url) as url,
            CountingProxy(*_host_port(url)) as proxy,
        ):
            settings = Settings(
                database_url=database_at(url, urlsplit(url).path.lstrip("/"), proxy.port),
                openrouter_api_key="sk-bench",
                models_file=_models_file(Path(workdir) / "models.toml"),
                log_level="WARNING",
            )
            async with build_services(settings) as services:
                senders = list(range(9_000_001, 9_000_001 + args.senders))
                await _seed(services, senders, args.turns)
                people = [Person(senders[i % len(senders)], "Bench") for i in range(args.messages)]
                ways = {"one statement": _one_statement, "upsert, then reservation and read": _two_statements}
                for way in ways.values():  # statements prepared, connections open
                    await _measure(way, services, people[: len(senders)])
                figures: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
                trips: dict[str, float] = {}
                for _ in range(args.rounds):
                    for name, way in ways.items():
                        before = proxy.round_trips
                        figures[name].append(await _measure(way, services, people))
                        trips[name] = (proxy.round_trips - before) / len(people)
    print(f"{args.messages} messages x {args.rounds} rounds; {args.senders} senders, {args.turns} turns each")
    print(f"{'way':36} {'CPU per message':>16} {'wall per message':>17} {'round trips':>12}")
    for name, values in figures.items():
        cpu = statistics.median(v[0] for v in values) * 1e6
        wall = statistics.median(v[1] for v in values) * 1e6
        print(f"{name:36} {cpu:13.0f} µs {wall:14.0f} µs {trips[name]:12.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--turns", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
