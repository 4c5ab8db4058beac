"""A benchmark-only launcher: ``python -m benchmarks.launch run bot`` (or ``run web``, the bot in webhook mode) runs
the unchanged ``pomogator`` CLI, counting SQLite statements or profiling.

* ``BENCH_SQLITE_COUNTS=path``: every ``sqlite3`` connection the process opens gets a trace callback; the number of
  connections and of statements executed (``BEGIN``, ``COMMIT`` and ``PRAGMA`` included) is written to ``path`` as
  JSON every 0.1 s. SQLite has no wire protocol to watch from outside, so this is how its "round trips" are counted.
* ``BENCH_CPROFILE=path``: the whole run under cProfile, stats dumped to ``path`` at exit.

Only ``sqlite3.connect`` is wrapped (aiosqlite calls it in its worker thread); nothing in ``pomogator`` is touched.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

_counts = {"connections": 0, "statements": 0}
_lock = threading.Lock()


def _trace(_statement: str) -> None:
    with _lock:
        _counts["statements"] += 1


def _install_sqlite_counter(path: Path) -> None:
    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection: sqlite3.Connection = original(*args, **kwargs)
        connection.set_trace_callback(_trace)
        with _lock:
            _counts["connections"] += 1
        return connection

    sqlite3.connect = connect  # type: ignore[assignment]

    def dump() -> None:
        while True:
            with _lock:
                text = json.dumps(_counts)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
            time.sleep(0.1)

    threading.Thread(target=dump, name="bench-sqlite-counts", daemon=True).start()


def main() -> None:
    counts = os.environ.get("BENCH_SQLITE_COUNTS")
    if counts:
        _install_sqlite_counter(Path(counts))
    from pomogator.console import main as cli_main

    sys.argv = ["pomogator", *sys.argv[1:]]
    profile_path = os.environ.get("BENCH_CPROFILE")
    if not profile_path:
        cli_main()
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(cli_main)
    finally:
        profiler.dump_stats(profile_path)


if __name__ == "__main__":
    main()
