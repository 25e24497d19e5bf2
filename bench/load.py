"""Mixed API load on the full stack: daphne + one Celery worker on PostgreSQL and Redis, with the connection pool
(the default) against persistent connections (`DB_POOL_MAX_SIZE=0`, `CONN_MAX_AGE=60`, the first milestone's
configuration) in the same run.

Requests, from 32 concurrent clients (httpx, one keep-alive connection each): the agents list, a run's status,
a prompt render, and a run started with `"wait": true` on the mock model (in the worker), in proportions 3:3:3:1.
Measured: every status code (target: no error at all), p50/p95 latency and throughput, the most PostgreSQL sessions
of the benchmark's database seen while it runs (target: at most the pools' sizes: daphne's plus the worker's), and
daphne's RSS growth from after a warm-up to the end (target: under 10%).

Needs the full stack (DATABASE_URL, REDIS_URL); runs on a throw-away database, queue and key prefixes.
BENCH_LOAD_REQUESTS (10,000) and BENCH_LOAD_BASELINE_REQUESTS (3,000; 0 skips the baseline) set the sizes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import Comparison, Stats, report, setup_django

REQUESTS = int(os.environ.get("BENCH_LOAD_REQUESTS", "10000"))
BASELINE_REQUESTS = int(os.environ.get("BENCH_LOAD_BASELINE_REQUESTS", "3000"))
CLIENTS = 32
WARMUP = 500
WEB_POOL = 10  # daphne's DB_POOL_MAX_SIZE (the default)
WORKER_THREADS = 8  # the worker's --concurrency, and its DB_POOL_MAX_SIZE (README "Sizing the database pool")
ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = Path(os.environ.get("TMPDIR", "/tmp"))


@dataclass
class Phase:
    label: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # "<kind> <status or exception>"
    peak_sessions: int = 0
    rss_after_warmup_kb: int = 0
    rss_end_kb: int = 0
    wall_s: float = 0.0


def main() -> None:
    pid = os.getpid()
    os.environ.setdefault("CACHE_KEY_PREFIX", f"benchload{pid}")
    os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"benchload{pid}:asgi")
    os.environ.setdefault("CELERY_QUEUE", f"benchload{pid}")
    os.environ.setdefault("THROTTLE_USER_RATE", "10000000/min")
    os.environ.setdefault("DEBUG", "false")
    setup_django()
    from django.conf import settings
    from django.db import connection

    if not (settings.USING_POSTGRES and settings.REDIS_URL):
        print("load: skipped — needs the full stack (DATABASE_URL=postgres://... and REDIS_URL=redis://...)")
        return
    connection.settings_dict["TEST"]["NAME"] = f"test_bench_load_{pid}"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    worker = None
    try:
        key, run_ids, worker = prepare()
        database = connection.settings_dict["NAME"]
        phases = [run_phase("pool", key, run_ids, database, {}, REQUESTS)]
        if BASELINE_REQUESTS:
            persistent = {"DB_POOL_MAX_SIZE": "0", "CONN_MAX_AGE": "60"}
            phases.append(run_phase("persistent connections", key, run_ids, database, persistent, BASELINE_REQUESTS))
        write_report(phases)
    finally:
        if worker is not None:
            worker.stop()
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


def prepare():
    from django.contrib.auth import get_user_model

    from agent_platform.accounts.services import api_key_create
    from agents.models import Run
    from agents.services import agent_create
    from prompts.services import prompt_create
    from tests.support.worker import CeleryWorker, worker_environment

    user = get_user_model().objects.create_user(username="load", password="load-password-123")
    key = api_key_create(user=user, name="load").raw_key
    agent = agent_create(data={"slug": "load", "name": "Load", "model_endpoint": "mock/load", "tools": []}, owner=user)
    prompt_create(name="greet", text="Hello {{ who }}!", user=user)
    worker = CeleryWorker(
        env=worker_environment(DB_POOL_MAX_SIZE=str(WORKER_THREADS)), concurrency=WORKER_THREADS, pool="threads"
    )
    worker.start()
    run_ids = [str(run.id) for run in Run.objects.filter(agent=agent)]
    return key, run_ids, worker


def start_daphne(env: dict[str, str], label: str) -> tuple[subprocess.Popen, str]:
    from tests.support.redis_server import free_port

    port = free_port()
    log = open(LOG_DIR / f"bench-load-daphne-{os.getpid()}-{label.replace(' ', '-')}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agent_platform.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=1).read()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("daphne did not start") from None
            time.sleep(0.2)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def sessions_of(database: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
        )
        return cursor.fetchone()[0]


def run_phase(label: str, key: str, run_ids: list[str], database: str, extra_env: dict, total: int) -> Phase:
    from tests.support.worker import worker_environment

    phase = Phase(label)
    daphne, base_url = start_daphne(worker_environment(**extra_env), label)
    stop = threading.Event()

    def watch() -> None:
        from django.db import connections

        try:
            while not stop.is_set():
                phase.peak_sessions = max(phase.peak_sessions, sessions_of(database))
                stop.wait(0.1)
        finally:
            connections.close_all()  # this thread's own session, or the database cannot be dropped

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run_ids = run_ids or [asyncio.run(seed_run(base_url, key))]
        asyncio.run(drive(phase, base_url, key, run_ids, total, daphne.pid))
        phase.rss_end_kb = rss_kb(daphne.pid)
    finally:
        stop.set()
        watcher.join()
        daphne.terminate()
        daphne.wait(15)
    return phase


async def seed_run(base_url: str, key: str) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as client:
        response = await client.post("/api/v1/agents/load/runs/", json={"input": "seed", "wait": True}, timeout=60)
        return response.json()["id"]


def request_for(i: int, run_ids: list[str]) -> tuple[str, str, str, dict | None]:
    kind = ("agents", "status", "render", "agents", "status", "render", "agents", "status", "render", "run")[i % 10]
    if kind == "agents":
        return kind, "GET", "/api/v1/agents/", None
    if kind == "status":
        return kind, "GET", f"/api/v1/runs/{run_ids[i % len(run_ids)]}/", None
    if kind == "render":
        return kind, "POST", "/api/v1/prompts/greet/render/", {"variables": {"who": f"client {i}"}}
    return kind, "POST", "/api/v1/agents/load/runs/", {"input": f"load {i}", "wait": True}


async def drive(phase: Phase, base_url: str, key: str, run_ids: list[str], total: int, daphne_pid: int) -> None:
    import httpx

    counter = iter(range(total))
    done = 0
    headers = {"Authorization": f"Bearer {key}"}

    async def client_loop() -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
            for i in counter:
                kind, method, path, body = request_for(i, run_ids)
                t0 = time.perf_counter()
                try:
                    response = await client.request(method, path, json=body)
                    status = response.status_code
                    ok = status == 200  # a run still queued after its wait (202) counts as an error
                except httpx.HTTPError as exc:
                    status, ok = type(exc).__name__, False
                elapsed_ms = (time.perf_counter() - t0) * 1000
                if i >= WARMUP or total <= WARMUP:
                    phase.latencies_ms.append(elapsed_ms)
                phase.statuses[status] += 1
                if not ok:
                    phase.errors[f"{kind} {status}"] += 1
                done += 1
                if done == WARMUP:
                    phase.rss_after_warmup_kb = rss_kb(daphne_pid)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(CLIENTS)))
    phase.wall_s = time.perf_counter() - started
    if not phase.rss_after_warmup_kb:
        phase.rss_after_warmup_kb = rss_kb(daphne_pid)


def write_report(phases: list[Phase]) -> None:
    ours, baseline = phases[0], (phases[1] if len(phases) > 1 else None)
    session_limit = WEB_POOL + WORKER_THREADS

    def stats(phase: Phase) -> Stats:
        return Stats.from_samples(phase.label, phase.latencies_ms, phase.wall_s)

    def note(phase: Phase) -> str:
        requests = sum(phase.statuses.values())
        growth = (phase.rss_end_kb - phase.rss_after_warmup_kb) / max(phase.rss_after_warmup_kb, 1) * 100
        errors = sum(phase.errors.values())
        top = ", ".join(f"{name}: {count}" for name, count in phase.errors.most_common(3))
        return (
            f"{phase.label}: {requests} requests @c{CLIENTS}, {errors} errors ({errors / max(requests, 1):.1%})"
            + (f" [{top}]" if top else "")
            + f", {requests / phase.wall_s:.0f} req/s, peak {phase.peak_sessions} PostgreSQL sessions"
            + f", daphne RSS {phase.rss_after_warmup_kb // 1024} -> {phase.rss_end_kb // 1024} MB ({growth:+.1f}%)"
        )

    growth = (ours.rss_end_kb - ours.rss_after_warmup_kb) / max(ours.rss_after_warmup_kb, 1) * 100
    met = not ours.errors and ours.peak_sessions <= session_limit and growth < 10
    notes = [note(ours)] + ([note(baseline)] if baseline else [])
    for line in notes:
        print(line)
    report(
        name="load",
        title="Mixed API load: daphne + a worker on PostgreSQL, pool vs persistent connections",
        comparisons=[
            Comparison(
                f"{REQUESTS} mixed requests @c{CLIENTS}",
                stats(ours),
                stats(baseline) if baseline else None,
                target=f"0 errors, sessions <= {session_limit}, RSS growth < 10%",
                met=met,
                note="; ".join(notes),
            )
        ],
        extra={"phases": [{"label": p.label, "statuses": dict(p.statuses), "errors": dict(p.errors)} for p in phases]},
    )


if __name__ == "__main__":
    main()
