"""Usage report grouped by model and day over 30 days with 1,000,000 cost records, on PostgreSQL.

Platform path: `costs.selectors.get_usage_report(start, end, group_by="model")`, which reads the daily rollups
(maintained by the beat task; built here once with `usage_rollups_refresh`) for whole past days and the raw cost
records for today. Baseline: the same totals by one plain `GROUP BY model, day` over the raw table (the query
a report without rollups would run), through the same connection. Target: the report's p95 ≤ 200 ms.

Rows are generated in the database (`INSERT ... SELECT generate_series`), 1,000,000 by default
(`BENCH_USAGE_RECORDS`), evenly over the last 30 days in time order (as calls arrive), 12 models, 200 users (each
with its own API key, on one of 20 agents). Runs on its own throw-away database (`test_bench_usage_<pid>`),
dropped at the end.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, timedelta

from bench.harness import Comparison, measure, report, setup_django

RECORDS = int(os.environ.get("BENCH_USAGE_RECORDS", "1000000"))
ITERATIONS = int(os.environ.get("BENCH_USAGE_ITERATIONS", "40"))


def main() -> None:
    os.environ.setdefault("CACHE_KEY_PREFIX", f"benchusage{os.getpid()}")
    setup_django()
    from django.conf import settings
    from django.db import connection

    if not settings.USING_POSTGRES:
        print("usage_report: needs PostgreSQL (set DATABASE_URL); skipped")
        return
    connection.settings_dict["TEST"]["NAME"] = f"test_bench_usage_{os.getpid()}"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        run()
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


GENERATE = """
INSERT INTO costs_costrecord (
    attempt_id, call_id, created_at, trace_id, span_id, run_id, agent_id, agent_slug, user_id, api_key_id, team_id,
    experiment_id, provider, model, endpoint, status, input_tokens, output_tokens, cached_tokens, reasoning_tokens,
    latency_ms, price_id, cost, currency, unpriced)
SELECT
    'bench-' || g, '', %(now)s - interval '30 days' * (1 - g::float8 / %(n)s) + random() * interval '2 seconds', '', '',
    '', (g %% 200) %% 20 + 1, '', g %% 200 + 1,
    g %% 200 + 1, NULL, NULL, 'openai', 'model-' || (g %% 12), '', CASE WHEN g %% 50 = 0 THEN 'error' ELSE 'ok' END,
    (random() * 4000)::int, (random() * 800)::int, 0, 0, random() * 2000, NULL,
    round((random() * 0.02)::numeric, 10), 'USD', false
FROM generate_series(1, %(n)s) AS g
"""


def run() -> None:
    from django.db import connection
    from django.utils import timezone

    from costs.selectors import get_usage_report
    from costs.services import usage_rollups_refresh

    now = timezone.now().astimezone(UTC)
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(GENERATE, {"now": now, "n": RECORDS})
        cursor.execute("ANALYZE costs_costrecord")
    generated_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    days = usage_rollups_refresh(days_back=31)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE costs_usagedaily")
        cursor.execute("SELECT count(*) FROM costs_usagedaily")
        rollup_rows = cursor.fetchone()[0]
    rollup_s = time.perf_counter() - t0
    print(f"generated {RECORDS:,} cost records in {generated_s:.1f} s; rolled up {len(days)} days "
          f"({rollup_rows:,} rollup rows) in {rollup_s:.1f} s")  # fmt: skip

    end = now
    start = end - timedelta(days=30)

    def platform():
        return get_usage_report(start=start, end=end, group_by="model")

    def bare():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT model, date_trunc('day', created_at AT TIME ZONE 'UTC') AS d, count(*), "
                "sum(input_tokens), sum(output_tokens), sum(cost) FROM costs_costrecord "
                "WHERE created_at >= %s AND created_at < %s GROUP BY 1, 2",
                [start, end],
            )
            return cursor.fetchall()

    result = platform()
    raw_rows = bare()
    raw_total = sum(r[5] for r in raw_rows)
    assert result.totals["calls"] == sum(r[2] for r in raw_rows), (result.totals["calls"], sum(r[2] for r in raw_rows))
    assert abs(result.totals["cost"] - raw_total) < 1e-6, (result.totals["cost"], raw_total)

    ours = measure(platform, iterations=ITERATIONS, warmup=3, label="get_usage_report")
    base = measure(bare, iterations=max(5, ITERATIONS // 4), warmup=1, label="raw GROUP BY")
    report(
        name="usage_report",
        title=f"Usage report by model and day, 30 days, {RECORDS:,} cost records (PostgreSQL)",
        comparisons=[
            Comparison(
                "report (rollups + today raw) vs raw GROUP BY",
                ours,
                base,
                target="p95 <= 200 ms",
                met=ours.p95_ms <= 200,
                note=f"{result.rollup_days} rollup days, {rollup_rows:,} rollup rows",
            )
        ],
        extra={"records": RECORDS, "rollup_rows": rollup_rows, "rollup_build_s": rollup_s, "generate_s": generated_s},
    )


if __name__ == "__main__":
    main()
