"""``surplus bench-service``: the running service's resident memory and CPU share.

``measure`` starts ``surplus demo`` in a subprocess (on a temporary data directory, the API
on a free port of 127.0.0.1) and, once its API answers, reads the child's figures from
``/proc`` every few seconds: ``VmRSS`` and ``VmHWM`` (the peak) from ``/proc/<pid>/status``,
and ``utime + stime`` from ``/proc/<pid>/stat``. The CPU share is the CPU time used since the
API answered over the wall time since then, in percent of one core; at the end the API says
whether the gateway was still polled. The demo is one process: the figures are the service's
together with its simulated gateway's. Linux only.

MB here are 2**20 bytes, as ``ps`` and ``top`` count them.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from surplus.domain.errors import SurplusError

__all__ = ["CPU_TARGET_PCT", "RSS_TARGET_MB", "Result", "Row", "Usage", "measure", "usage"]

RSS_TARGET_MB = 150.0
CPU_TARGET_PCT = 2.0  # of one core
MAX_SAMPLE_S = 5.0  # at most this long between two readings of /proc
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_KIB_PER_MB = 1024.0


@dataclass(frozen=True, slots=True)
class Usage:
    """What ``/proc`` says of a process at one moment."""

    rss_mb: float
    peak_mb: float
    cpu_s: float  # user and system time, all threads


@dataclass(frozen=True, slots=True)
class Row:
    """One reading of the demo: ``cpu_pct`` is its share of one core since the previous one."""

    elapsed_s: float
    rss_mb: float
    peak_mb: float
    cpu_pct: float


@dataclass(frozen=True, slots=True)
class Result:
    """The last reading's memory, the CPU share over the whole run and, at its end, the
    status of each integration (``"gateway ok"``: the demo was polling all along)."""

    rss_mb: float
    peak_mb: float
    cpu_pct: float
    elapsed_s: float
    integrations: str

    @property
    def within_target(self) -> bool:
        return self.peak_mb < RSS_TARGET_MB and self.cpu_pct < CPU_TARGET_PCT

    def summary(self) -> str:
        verdict = "within target" if self.within_target else "over target"
        return (
            f"rss {self.rss_mb:.1f} MB (peak {self.peak_mb:.1f} MB), cpu {self.cpu_pct:.1f} %"
            f" of one core over {self.elapsed_s:.0f} s: {verdict}"
            f" (under {RSS_TARGET_MB:g} MB and {CPU_TARGET_PCT:g} %)"
        )


def usage(pid: int) -> Usage:
    """The resident memory, its peak and the CPU time of process ``pid``."""
    proc = Path("/proc") / str(pid)
    fields: dict[str, str] = {}
    for line in (proc / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    # the command name in parentheses may hold spaces; the fields after it are numbers
    after_name = (proc / "stat").read_text().rpartition(")")[2].split()
    utime, stime = int(after_name[11]), int(after_name[12])  # fields 14 and 15 of stat
    return Usage(
        rss_mb=_kib(fields["VmRSS"]) / _KIB_PER_MB,
        peak_mb=_kib(fields["VmHWM"]) / _KIB_PER_MB,
        cpu_s=(utime + stime) / os.sysconf("SC_CLK_TCK"),
    )


def _kib(value: str) -> int:
    number, unit = value.split()
    if unit != "kB":  # the kernel's name for KiB
        raise ValueError(f"unexpected unit in /proc: {value!r}")
    return int(number)


def measure(
    *, minutes: float, poll_s: float, speed: float, on_row: Callable[[Row], None]
) -> Result:
    """Run the demo for ``minutes`` once its API answers, telling ``on_row`` each reading;
    then stop it with SIGINT. A ``SurplusError`` if it does not start or stops early."""
    total_s = minutes * 60.0
    sample_s = min(MAX_SAMPLE_S, total_s / 10.0)
    demo = subprocess.Popen(
        [
            *(sys.executable, "-m", "surplus.cli", "demo", "--port", "0"),
            *("--speed", str(speed), "--poll-s", str(poll_s)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None and demo.stderr is not None
        printed: queue.Queue[str] = queue.Queue()
        errors: list[str] = []
        threading.Thread(target=_pump, args=(demo.stdout, printed.put), daemon=True).start()
        threading.Thread(target=_pump, args=(demo.stderr, errors.append), daemon=True).start()
        state_url = _wait_until_ready(demo, printed, errors)
        started, first = time.monotonic(), usage(demo.pid)
        previous, last = started, first
        for k in range(1, round(total_s / sample_s) + 1):
            time.sleep(max(0.0, started + k * sample_s - time.monotonic()))
            if demo.poll() is not None:
                raise SurplusError(f"the demo stopped after {k * sample_s:.0f} s: {_tail(errors)}")
            now, current = time.monotonic(), usage(demo.pid)
            cpu_pct = 100.0 * (current.cpu_s - last.cpu_s) / (now - previous)
            on_row(Row(now - started, current.rss_mb, current.peak_mb, cpu_pct))
            previous, last = now, current
        elapsed = previous - started
        try:
            integrations = httpx.get(state_url, timeout=5).json()["integrations"]
        except httpx.HTTPError as err:
            raise SurplusError(f"the demo's API did not answer at the end: {err}") from err
        return Result(
            last.rss_mb,
            last.peak_mb,
            100.0 * (last.cpu_s - first.cpu_s) / elapsed,
            elapsed,
            ", ".join(f"{i['name']} {i['status']}" for i in integrations),
        )
    finally:
        _stop(demo)


def _pump(stream: IO[str], put: Callable[[str], None]) -> None:
    for line in stream:
        put(line)


def _wait_until_ready(
    demo: subprocess.Popen[str], printed: queue.Queue[str], errors: list[str]
) -> str:
    """Wait for the line the demo prints once its API listens; returns its state's URL."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            line = printed.get(timeout=0.2).strip()
            if line.startswith("state:"):
                return line.removeprefix("state:").strip()
        except queue.Empty:
            if demo.poll() is not None:
                raise SurplusError(f"the demo did not start: {_tail(errors)}") from None
    raise SurplusError(f"the demo did not start within {STARTUP_TIMEOUT_S:g} s")


def _stop(demo: subprocess.Popen[str]) -> None:
    """SIGINT, as Ctrl-C would; SIGKILL if it has not stopped in time."""
    if demo.poll() is None:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()


def _tail(errors: list[str]) -> str:
    return "".join(errors[-5:]).strip() or "nothing on stderr"
