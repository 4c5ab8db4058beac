"""A non-editable install (a built wheel) migrates and runs from outside the source tree."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import clean_env, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel and installed (without dependencies) into a folder of its own.

    Built from a copy of what the Dockerfile copies: in the checkout, setuptools reuses (and two workers building at
    once collide in) its ``build/`` folder, whose stale files would reach the wheel."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, source / name)
    for name in ("pomogator", "piccolo_migrations"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)], check=True)
    wheels = list(dist.glob("pomogator-*.whl"))
    assert len(wheels) == 1
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheels[0])], check=True)
    assert (target / "piccolo_migrations" / "pomogator_0001_initial.py").exists()
    assert (target / "pomogator" / "llm" / "models.toml").exists()
    return target


async def test_wheel_migrates_and_runs_outside_the_tree(installed_wheel: Path, tmp_path: Path, db_url: str) -> None:
    env = clean_env(PYTHONPATH=str(installed_wheel), POMOGATOR_DATABASE_URL=db_url)
    python = sys.executable

    where = await run_cli("-c", "import pomogator; print(pomogator.__file__)", cwd=tmp_path, env=env, program=python)
    assert where.stdout.strip().startswith(str(installed_wheel)), where

    migrated = await run_cli("-m", "pomogator", "db", "migrate", cwd=tmp_path, env=env, program=python)
    assert migrated.code == 0, migrated.stderr
    granted = await run_cli(
        "-m", "pomogator", "user", "grant-premium", "1", "--days", "2", cwd=tmp_path, env=env, program=python
    )
    assert granted.code == 0, granted.stderr
    shown = await run_cli("-m", "pomogator", "user", "show", "1", "--json", cwd=tmp_path, env=env, program=python)
    assert json.loads(shown.stdout)["premium"] is True
    assert not (tmp_path / "piccolo_conf.py").exists()


def test_wheel_declares_its_license_as_an_spdx_expression(installed_wheel: Path) -> None:
    (metadata,) = installed_wheel.glob("pomogator-*.dist-info/METADATA")
    headers = metadata.read_text().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: LicenseRef-Proprietary" in headers
    assert not any(line.startswith("License:") for line in headers)
