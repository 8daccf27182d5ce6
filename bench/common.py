"""Helpers shared by the benchmarks."""

from __future__ import annotations

import subprocess


def psql(sql: str, url: str) -> None:
    subprocess.run(["psql", url, "-q", "-c", sql], check=True)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]
