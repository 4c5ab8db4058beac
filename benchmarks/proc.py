"""What a process costs, read from /proc, and what machine the figures come from."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PACKAGES = (
    "aiogram",
    "aiohttp",
    "openai",
    "httpx",
    "piccolo",
    "asyncpg",
    "aiosqlite",
    "loguru",
    "starlette",
    "uvicorn",
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of ``pid`` in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def machine_cpu_seconds() -> float:
    """CPU time spent by the whole machine (all cores, not idle), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass(frozen=True)
class Exited:
    """A short-lived command: wall time, peak RSS (ru_maxrss), exit code and output."""

    seconds: float
    peak_mib: float
    code: int
    stdout: str
    stderr: str


# Starts the measured command and reports its own figures: wall time from the start to the exit, the exit status and
# ru_maxrss. A command started straight from the benchmark's process would report that process's peak instead when it
# is the larger: Linux keeps, in the peak of a process that runs a new program, the peak of the memory it had before
# (a fork of the benchmark, ~50 MiB of it). Started from this launcher (a few MiB), the peak is the command's.
_LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(report, "w") as out:
    json.dump({"seconds": seconds, "maxrss_kib": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, out)
"""


def run_with_peak(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> Exited:
    """Run ``argv`` and report its wall time and peak RSS (see ``_LAUNCHER``); output goes to temporary files."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".json") as report,
    ):
        launcher = [sys.executable, "-I", "-S", "-c", _LAUNCHER, report.name, *argv]
        process = subprocess.Popen(
            launcher, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise TimeoutError(f"{argv} did not finish within {timeout}s") from None
        if process.returncode != 0:
            raise RuntimeError(f"the launcher of {argv} exited {process.returncode}")
        figures = json.loads(Path(report.name).read_text())
        out.seek(0)
        err.seek(0)
        return Exited(
            figures["seconds"],
            figures["maxrss_kib"] / 1024,
            figures["code"],
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """nproc, CPU model, memory, kernel, Python and the versions of the packages on the hot path."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    info = {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model(),
        "memory": f"{mem_kib / 1024 / 1024:.0f} GiB",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
    }
    for name in PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = "-"
    return info
