"""What a process costs, read from /proc, and what machine the figures come from."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
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


def run_with_peak(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> Exited:
    """Run ``argv``, wait for it with ``os.wait4`` and report its peak RSS; output goes to temporary files."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                raise TimeoutError(f"{argv} did not finish within {timeout}s")
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Exited(
            seconds,
            usage.ru_maxrss / 1024,
            process.returncode,
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
