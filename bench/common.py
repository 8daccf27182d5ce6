"""Helpers shared by the benchmarks."""

from __future__ import annotations

import subprocess


def psql(sql: str, url: str) -> None:
    subprocess.run(["psql", url, "-q", "-c", sql], check=True)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def backend_peak(pid: int) -> str:
    """Peak resident memory (VmHWM) of a PostgreSQL backend process, e.g. '532 MiB'."""
    from pathlib import Path

    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return f"{int(line.split()[1]) / 1024:.0f} MiB"
    except OSError:
        pass
    return "n/a"
