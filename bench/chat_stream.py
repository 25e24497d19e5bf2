"""Streaming chat through the full stack vs bare `litellm.acompletion(stream=True)`, same fake server, same run.

Platform path: a websocket client of daphne (`/ws/chat/<agent>/`) sends a message; the consumer creates the run and
hands it to a real Celery worker (threads pool) over Redis; the worker runs the orchestrator, streams the model
through the LLM layer, and publishes every token event to the channel layer (channels-redis); the consumer relays
them to the socket. Measured at the client: time from sending the message to the first token, and the delay
between consecutive tokens.
Baseline: `litellm.acompletion(stream=True)` to the same fake OpenAI server: time to the first content chunk and
between chunks.
At 1 and 50 concurrent chats. Every stream is checked: its token events must be numbered without gaps, in order,
and join to exactly the expected text (no lost, duplicated or reordered chunks).
Targets: first token at most 10 ms later at p50; inter-token delay at most 5 ms added at p95; zero lost or reordered
chunks over 1,000 streams.

Needs the full stack (DATABASE_URL and REDIS_URL); runs on its own throw-away database, queue and key prefixes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.harness import Comparison, Stats, report, setup_django

TOKEN_DELAY = float(os.environ.get("BENCH_TOKEN_DELAY", "0.02"))  # 50 tokens/s per stream, a typical model
WORDS = 30  # tokens per answer (the fake server echoes the message word by word)
STREAMS_SINGLE = int(os.environ.get("BENCH_STREAMS_SINGLE", "100"))
STREAMS_CONCURRENT = int(os.environ.get("BENCH_STREAMS_CONCURRENT", "1000"))
CONCURRENCY = 50
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))  # Celery worker processes (threads pool each)
ROOT = Path(__file__).resolve().parent.parent
DAPHNE_LOG = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-chat-daphne-{os.getpid()}.log"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def message_for(i: int) -> str:
    return f"stream-{i} " + " ".join(f"w{i}x{j}" for j in range(WORDS - 1))


def main() -> None:
    pid = os.getpid()
    os.environ.setdefault("CACHE_KEY_PREFIX", f"benchchat{pid}")
    os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"benchchat{pid}:asgi")
    os.environ.setdefault("CELERY_QUEUE", f"benchchat{pid}")
    os.environ.setdefault("THROTTLE_USER_RATE", "10000000/min")
    os.environ.setdefault("DEBUG", "false")  # as deployed: DEBUG logs every SQL query, which costs ~0.1 ms each
    setup_django()
    from django.conf import settings
    from django.db import connection

    if not (settings.USING_POSTGRES and settings.REDIS_URL):
        print("chat_stream: skipped — needs the full stack (DATABASE_URL=postgres://... and REDIS_URL=redis://...)")
        return
    connection.settings_dict["TEST"]["NAME"] = f"test_bench_chat_{pid}"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    processes: list[subprocess.Popen] = []
    workers = []
    try:
        workers, processes, base_url, ws_url, cookie, origin = start_stack(processes)
        asyncio.run(run(base_url, ws_url, cookie, origin))
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for worker in workers:
            worker.stop()
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)


def start_stack(processes):
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from agent_platform.llm.services import credential_create, endpoint_create
    from agents.services import agent_create
    from tests.support.worker import CeleryWorker, worker_environment

    # the fake model server, in its own process
    fake = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading; from tests.support.fake_openai import FakeOpenAIServer; "
            f"s = FakeOpenAIServer(token_delay={TOKEN_DELAY}); s.record_requests = False; s.start(); "
            "print(s.base_url, flush=True); threading.Event().wait()",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    processes.append(fake)
    base_url = fake.stdout.readline().strip()

    credential = credential_create(name="bench-fake-key", provider="openai", api_key="sk-bench-0123456789abcdef")
    endpoint_create(name="bench-fake", model="openai/fake-model", api_base=base_url, credential=credential)
    agent_create(data={"slug": "bench", "name": "Bench", "model_endpoint": "bench-fake", "system_prompt_text": "Echo."})
    user = get_user_model().objects.create_user(username="bench", password="bench-password-123")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.save()

    env = worker_environment()
    workers = [CeleryWorker(env=env, concurrency=CONCURRENCY // WORKERS + 4, pool="threads") for _ in range(WORKERS)]
    for worker in workers:
        worker.start()

    port = _free_port()
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agent_platform.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(DAPHNE_LOG, "wb"),  # noqa: SIM115 - closed with the process
    )
    processes.append(daphne)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("daphne did not start") from None
            time.sleep(0.2)
    return (
        workers,
        processes,
        base_url,
        f"ws://127.0.0.1:{port}/ws/chat/bench/",
        f"sessionid={session.session_key}",
        f"http://127.0.0.1:{port}",
    )


# --- the two paths ----------------------------------------------------------------------------------------------


async def bare_stream(base_url: str, i: int) -> tuple[float, list[float], str]:
    import litellm

    text = message_for(i)
    t0 = time.perf_counter()
    response = await litellm.acompletion(
        model="openai/fake-model",
        api_base=base_url,
        api_key="sk-bench-0123456789abcdef",
        messages=[{"role": "system", "content": "Echo."}, {"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    ttft, last, gaps, out = None, None, [], []
    async for chunk in response:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if not delta:
            continue
        now = time.perf_counter()
        if ttft is None:
            ttft = (now - t0) * 1000
        else:
            gaps.append((now - last) * 1000)
        last = now
        out.append(delta)
    return ttft, gaps, "".join(out)


GAP_STATS = {"transport_gaps": 0, "recovered_events": 0}
FRAMES = {"frames": 0, "events": 0}  # live event frames, and the events they carried (a busy server batches)
SERVER_TIMINGS: list[dict] = []  # the worker's own account of each run (the final event's timings_ms)
SILENCE_SECONDS = 10.0  # a client that hears nothing for this long asks for what it may have missed


async def platform_stream(session, ws_url: str, cookie: str, origin: str, i: int):
    """(ttft ms, inter-token gaps ms, text, problems) for one chat over the websocket.

    Like the chat page, the client applies events strictly in sequence order; when it sees a gap (or hears nothing
    for a while) it asks the server for the missing events by sequence number ("resume"). A stream counts as lost
    or reordered if, even so, its text is not exactly the expected answer."""
    text = message_for(i)
    problems: list[str] = []
    async with session.ws_connect(ws_url, headers={"Cookie": cookie, "Origin": origin}) as ws:
        t0 = time.perf_counter()
        await ws.send_str(json.dumps({"type": "message", "text": text}))
        ttft, last, gaps, out = None, None, [], []
        run_id, next_seq, pending, done = None, 1, {}, False  # a run's first attempt numbers its events from 1
        deadline = time.monotonic() + 120
        while not done:
            if time.monotonic() > deadline:
                problems.append("timed out")
                break
            try:
                msg = await ws.receive(timeout=SILENCE_SECONDS)
            except TimeoutError:
                if run_id is not None:  # silence: ask for what we may have missed
                    await ws.send_str(json.dumps({"type": "resume", "run_id": run_id, "after_seq": next_seq - 1}))
                continue
            if msg.type != 1:  # aiohttp.WSMsgType.TEXT
                problems.append(f"socket closed: {msg.type} {ws.close_code}")
                break
            data = json.loads(msg.data)
            if data["type"] == "run":
                run_id = data["run_id"]
                continue
            if data["type"] == "error":
                problems.append(f"error {data['error']['code']}")
                break
            if data["type"] == "event":
                incoming = [data["event"]]
            elif data["type"] == "events":  # several that the server sent together
                incoming = data["events"]
            else:
                continue
            if not data.get("replay"):
                FRAMES["frames"] += 1
                FRAMES["events"] += len(incoming)
            for event in incoming:
                if data.get("replay"):
                    GAP_STATS["recovered_events"] += 1
                if event["seq"] < next_seq or event["seq"] in pending:
                    continue  # a duplicate from a replay
                pending[event["seq"]] = event
            while next_seq in pending:
                event = pending.pop(next_seq)
                next_seq += 1
                if event["type"] == "token":
                    now = time.perf_counter()
                    if ttft is None:
                        ttft = (now - t0) * 1000
                    else:
                        gaps.append((now - last) * 1000)
                    last = now
                    out.append(event["data"]["text"])
                elif event["type"] == "final":
                    SERVER_TIMINGS.append({"client_ttft": ttft, **(event["data"].get("timings_ms") or {})})
                    done = True
                    break
                elif event["type"] == "error":
                    problems.append(f"run failed: {event['data'].get('code')}")
                    done = True
                    break
            if pending and not done and not data.get("replay"):  # a gap: ask for what is missing
                GAP_STATS["transport_gaps"] += 1
                await ws.send_str(json.dumps({"type": "resume", "run_id": run_id, "after_seq": next_seq - 1}))
    joined = "".join(out)
    if joined != f"Echo: {text}":
        problems.append(f"text differs from the expected answer: {joined[:60]!r}")
    return ttft, gaps, joined, problems


def _server_breakdown(pct: float = 50) -> dict[str, float]:
    """A percentile of each stage: queued (run created → claimed), prepare (claim, spec, context), first_token (task
    start → first token), and the client's first token; the rest of the client's time is the socket, daphne and the
    relay."""
    from bench.harness import percentile

    keys = ("queued", "prepare", "first_token", "client_ttft")
    return {
        key: round(percentile(values, pct), 1)
        for key in keys
        if (values := [t[key] for t in SERVER_TIMINGS if t.get(key) is not None])
    }


async def run_many(fn, count: int, concurrency: int):
    semaphore = asyncio.Semaphore(concurrency)
    results = []

    async def one(i):
        async with semaphore:
            results.append(await fn(i))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return results, time.perf_counter() - started


async def run(base_url: str, ws_url: str, cookie: str, origin: str) -> None:
    import aiohttp

    # warm up both paths (litellm import, connections, worker threads)
    for i in range(5):
        await bare_stream(base_url, 10_000 + i)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(5):
            await platform_stream(session, ws_url, cookie, origin, 20_000 + i)

        comparisons = []
        problems_total: list[str] = []
        streams_checked = 0
        for concurrency, count in ((1, STREAMS_SINGLE), (CONCURRENCY, STREAMS_CONCURRENT)):
            bare, bare_s = await run_many(lambda i: bare_stream(base_url, i), count, concurrency)
            recovered_before = GAP_STATS["recovered_events"]
            SERVER_TIMINGS.clear()
            FRAMES.update(frames=0, events=0)
            ours, ours_s = await run_many(
                lambda i: platform_stream(session, ws_url, cookie, origin, i), count, concurrency
            )
            for _ttft, _gaps, _text, problems in ours:
                problems_total.extend(problems)
            recovered = GAP_STATS["recovered_events"] - recovered_before
            for pct in (50, 95):
                stages = _server_breakdown(pct)
                print(f"  {concurrency} chat(s), p{pct} where the first token's time went (ms): {stages}")
            batching = FRAMES["events"] / max(FRAMES["frames"], 1)
            frames = f"{FRAMES['events']} live events in {FRAMES['frames']} frames ({batching:.2f} per frame)"
            print(f"  {concurrency} chat(s): {frames}")
            tokens_total = count * (WORDS + 1)
            streams_checked += len(ours)
            bare_ttft = Stats.from_samples("litellm", [r[0] for r in bare], bare_s)
            ours_ttft = Stats.from_samples("platform", [r[0] for r in ours if r[0] is not None], ours_s)
            bare_gap = Stats.from_samples("litellm", [g for r in bare for g in r[1]], bare_s)
            ours_gap = Stats.from_samples("platform", [g for r in ours for g in r[1]], ours_s)
            comparisons.append(
                Comparison(
                    f"first token, {concurrency} chat(s)",
                    ours_ttft,
                    bare_ttft,
                    target="+p50 <= 10 ms",
                    met=ours_ttft.p50_ms - bare_ttft.p50_ms <= 10,
                    note=f"{count} streams",
                )
            )
            comparisons.append(
                Comparison(
                    f"inter-token delay, {concurrency} chat(s)",
                    ours_gap,
                    bare_gap,
                    target="+p95 <= 5 ms",
                    met=ours_gap.p95_ms - bare_gap.p95_ms <= 5,
                    note=f"token delay {TOKEN_DELAY * 1000:g} ms at the server; {recovered} events re-fetched by "
                    f"sequence number (of ~{tokens_total + 3 * count} sent); {batching:.2f} events per frame",
                )
            )
    report(
        name="chat_stream",
        title="Streaming chat: websocket via daphne + Celery + Redis vs bare litellm.acompletion(stream=True)",
        comparisons=comparisons,
        extra={
            "streams_checked": streams_checked,
            "lost_or_reordered": len(problems_total),
            **GAP_STATS,
            "problems": problems_total[:20],
            "tokens_per_stream": WORDS + 1,
            "server_token_delay_ms": TOKEN_DELAY * 1000,
        },
    )
    verdict = "MET" if not problems_total else "NOT MET"
    print(f"streams checked: {streams_checked}; lost/reordered/failed: {len(problems_total)} (target 0: {verdict})")
    print(
        f"events missed in transport and fetched again by sequence number: {GAP_STATS['recovered_events']} "
        f"(gaps seen: {GAP_STATS['transport_gaps']})"
    )
    for problem in problems_total[:10]:
        print("  ", problem)


if __name__ == "__main__":
    main()
