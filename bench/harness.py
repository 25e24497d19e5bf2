"""Shared benchmark harness.

Every benchmark measures the platform's path side by side with the bare library doing the same work, in the same
process and run, and reports both and their ratio. Results land in `bench/results/<name>.json`; `make bench`
(`python -m bench.run_all`) runs every benchmark and writes `bench/RESULTS.md`.

    from bench.harness import setup_django, measure, measure_async, Comparison, report

    setup_django()                      # embedded default, or the full stack if DATABASE_URL/REDIS_URL are set
    base = measure(lambda: bare(), iterations=1000, warmup=50)
    ours = measure(lambda: platform(), iterations=1000, warmup=50)
    report(name="prompt_fetch", title="...", comparisons=[Comparison("cached fetch+render", ours, base,
           target="p99 <= 0.5 ms", met=ours.p99_ms <= 0.5)])
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def setup_django(**env: str) -> None:
    """Configure Django for a benchmark process (call before importing models)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent_platform.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for key, value in env.items():
        os.environ.setdefault(key, value)
    import django

    django.setup()


def percentile(samples: list[float], pct: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Stats:
    label: str
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    total_s: float
    samples_ms: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def from_samples(cls, label: str, samples_ms: list[float], total_s: float) -> Stats:
        return cls(
            label=label,
            n=len(samples_ms),
            p50_ms=percentile(samples_ms, 50),
            p95_ms=percentile(samples_ms, 95),
            p99_ms=percentile(samples_ms, 99),
            mean_ms=statistics.fmean(samples_ms) if samples_ms else float("nan"),
            total_s=total_s,
            samples_ms=samples_ms,
        )

    @property
    def per_second(self) -> float:
        return self.n / self.total_s if self.total_s else float("nan")


def measure(fn: Callable[[], object], *, iterations: int, warmup: int = 20, label: str = "") -> Stats:
    """Time `fn()` sequentially."""
    for _ in range(warmup):
        fn()
    samples = []
    started = time.perf_counter()
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return Stats.from_samples(label, samples, time.perf_counter() - started)


async def measure_async(
    fn: Callable[[], Awaitable[object]], *, iterations: int, warmup: int = 20, concurrency: int = 1, label: str = ""
) -> Stats:
    """Time `await fn()` `iterations` times with at most `concurrency` in flight; per-call latency samples."""
    for _ in range(warmup):
        await fn()
    samples: list[float] = []
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            t0 = time.perf_counter()
            await fn()
            samples.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(iterations)))
    return Stats.from_samples(label, samples, time.perf_counter() - started)


@dataclass
class Comparison:
    """One row of a benchmark's result: the platform's path against the bare baseline."""

    name: str
    platform: Stats
    baseline: Stats | None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio_p50(self) -> float | None:
        if not self.baseline or not self.baseline.p50_ms:
            return None
        return self.platform.p50_ms / self.baseline.p50_ms

    @property
    def added_p50_ms(self) -> float | None:
        return None if not self.baseline else self.platform.p50_ms - self.baseline.p50_ms

    @property
    def added_p95_ms(self) -> float | None:
        return None if not self.baseline else self.platform.p95_ms - self.baseline.p95_ms


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def report(*, name: str, title: str, comparisons: list[Comparison], extra: dict | None = None) -> dict:
    """Print a table and save `bench/results/<name>.json`."""
    print(f"\n== {title} ==")
    columns = ("ours p50", "ours p95", "base p50", "base p95")
    print(f"{'case':<38} " + " ".join(f"{c:>9}" for c in columns) + f" {'+p50':>8} {'+p95':>8} {'ratio':>6}")
    rows = []
    for c in comparisons:
        b = c.baseline
        print(
            f"{c.name:<38} {_fmt(c.platform.p50_ms):>9} {_fmt(c.platform.p95_ms):>9} "
            f"{_fmt(b.p50_ms if b else None):>9} {_fmt(b.p95_ms if b else None):>9} "
            f"{_fmt(c.added_p50_ms):>8} {_fmt(c.added_p95_ms):>8} {_fmt(c.ratio_p50, 2):>6}"
            + (f"  target {c.target}: {'MET' if c.met else 'NOT MET'}" if c.target else "")
            + (f"  ({c.note})" if c.note else "")
        )
        row = {
            "name": c.name,
            "platform": {k: v for k, v in asdict(c.platform).items() if k != "samples_ms"},
            "baseline": {k: v for k, v in asdict(b).items() if k != "samples_ms"} if b else None,
            "ratio_p50": c.ratio_p50,
            "added_p50_ms": c.added_p50_ms,
            "added_p95_ms": c.added_p95_ms,
            "target": c.target,
            "met": c.met,
            "note": c.note,
        }
        rows.append(row)
    result = {
        "name": name,
        "title": title,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": os.environ.get("DATABASE_URL", "sqlite").split("://", 1)[0],
        "rows": rows,
        "extra": extra or {},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    return result
