"""The shipped migrations' IDs: Piccolo applies migrations in the order of their IDs, not of their file names."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import piccolo_migrations
from pomogator.store.engine import MIGRATION_ID, shipped_migrations

FOLDER = Path(piccolo_migrations.__file__).parent
# The format of the IDs Piccolo writes, in which their order as strings (Piccolo's) is their order in time.
ID_FORMAT = "%Y-%m-%dT%H:%M:%S:%f"


def test_each_migration_file_has_an_id_greater_than_every_earlier_files() -> None:
    """A new migration's ID must come after all shipped ones (see ``shipped_migrations`` for how to write it):
    otherwise a database that has not applied them yet applies the new one first."""
    files = sorted(path for path in FOLDER.glob("*.py") if path.name != "__init__.py")
    assert files
    earlier: list[str] = []
    for path in files:
        found = MIGRATION_ID.search(path.read_text(encoding="utf-8"))
        assert found is not None, f"{path.name} has no ID"
        migration = found.group(1)
        datetime.strptime(migration, ID_FORMAT)  # noqa: DTZ007  (only the format is checked)
        assert all(migration > other for other in earlier), f"{path.name}: ID {migration} is not after {max(earlier)}"
        earlier.append(migration)
    assert list(shipped_migrations()) == earlier
    assert list(shipped_migrations().values()) == [path.stem for path in files]


def test_shipped_migrations_are_in_the_order_piccolo_applies_them(tmp_path: Path) -> None:
    """By ID, whatever the file names say (a file Piccolo's generator named by today's date sorts after
    ``pomogator_0011_...`` although its ID may come before)."""
    for name, migration in (
        ("pomogator_0001_first.py", "2026-11-26T06:13:49:361276"),
        ("pomogator_0002_ahead.py", "2026-11-30T10:00:00:000000"),
        ("pomogator_2026_11_28t11_41_02_142846.py", "2026-11-28T11:41:02:142846"),
        ("__init__.py", None),
    ):
        (tmp_path / name).write_text("" if migration is None else f'ID = "{migration}"\nVERSION = "1.38.0"\n')
    assert list(shipped_migrations(tmp_path).values()) == [
        "pomogator_0001_first",
        "pomogator_2026_11_28t11_41_02_142846",
        "pomogator_0002_ahead",
    ]
