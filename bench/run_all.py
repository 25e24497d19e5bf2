"""Run every benchmark in bench/ (each a module with `main()`), then write bench/RESULTS.md from their results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SKIP = {"__init__", "harness", "run_all"}


def benchmarks() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem not in SKIP)


def write_results_md() -> Path:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench`. Each row: the platform's path vs the bare library in the same run (ms).",
        "",
        "| benchmark | case | ours p50 | ours p95 | bare p50 | bare p95 | added p50 | added p95 | target | met"
        " | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(value) -> str:
        return "–" if value is None else f"{value:.3f}"

    for path in sorted((BENCH_DIR / "results").glob("*.json")):
        result = json.loads(path.read_text())
        for row in result["rows"]:
            ours, base = row["platform"], row["baseline"] or {}
            lines.append(
                f"| {result['name']} ({result['database']}) | {row['name']} | {f(ours['p50_ms'])} | {f(ours['p95_ms'])}"
                f" | {f(base.get('p50_ms'))} | {f(base.get('p95_ms'))} | {f(row['added_p50_ms'])}"
                f" | {f(row['added_p95_ms'])} | {row['target'] or '–'} | "
                f"{'yes' if row['met'] else ('no' if row['met'] is False else '–')} | {row.get('note') or ''} |"
            )
    out = BENCH_DIR / "RESULTS.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> int:
    failed = []
    for name in benchmarks():
        print(f"--- bench/{name}.py", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{name}"], cwd=BENCH_DIR.parent) != 0:
            failed.append(name)
    print(f"wrote {write_results_md()}")
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
