"""Experiment runner throughput: 1,000 items × 2 variants against the fake OpenAI server (50 ms per reply) at
concurrency 32, through the whole platform path (claim rows, render, LLM layer with its observers, evaluator,
batched result writes). Reported as wall time / ideal, where ideal = items × variants × latency / concurrency;
target <= 1.2. Side by side: bare `litellm.acompletion` doing the same 2,000 calls with an asyncio semaphore of 32.

    .venv/bin/python -m bench.experiment [--items 1000] [--latency 0.05] [--concurrency 32]

On the embedded default it uses a fresh SQLite file (migrated first); with DATABASE_URL it uses that database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Comparison, Stats, report, setup_django


def _prepare_database() -> None:
    if not os.environ.get("DATABASE_URL"):
        path = Path(tempfile.gettempdir()) / f"bench-experiment-{os.getpid()}.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    # the run happens inside experiment_start (eager, in this thread), so the wall time is the whole run
    # (with REDIS_URL too: the runner is measured in this process, not on a worker)
    setup_django(LOG_LEVEL="WARNING", EXPERIMENTS_BACKGROUND="false", CELERY_TASK_ALWAYS_EAGER="true")
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


async def _bare(server, *, calls: int, concurrency: int) -> tuple[float, list[float]]:
    from agent_platform.llm.providers import litellm_module

    lib = litellm_module()
    semaphore = asyncio.Semaphore(concurrency)
    samples: list[float] = []

    async def one(i: int) -> None:
        async with semaphore:
            t0 = time.perf_counter()
            await lib.acompletion(
                model="openai/fake-model",
                api_base=server.base_url,
                api_key="sk-bench",
                messages=[{"role": "user", "content": f"item {i}"}],
                num_retries=0,
                max_retries=0,
            )
            samples.append((time.perf_counter() - t0) * 1000)

    await one(-1)  # warm the client
    samples.clear()
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return time.perf_counter() - started, samples


class ServerProcess:
    """The fake OpenAI server in its own process, so its CPU work does not share this process's GIL."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.model = "fake-model"

    def __enter__(self) -> ServerProcess:
        import subprocess

        code = (
            "import sys, time\n"
            "from tests.support.fake_openai import FakeOpenAIServer\n"
            f"server = FakeOpenAIServer(latency={self.latency!r}).start()\n"
            "print(server.base_url, flush=True)\n"
            "sys.stdin.read()\n"
        )
        root = Path(__file__).resolve().parent.parent
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError("the fake server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)

    _prepare_database()
    from django.contrib.auth import get_user_model

    from experiments import services
    from experiments.models import ExperimentResult, ExperimentStatus
    from tests.support.fixtures import create_endpoint_for_fake_server

    calls = args.items * args.variants
    ideal = calls * args.latency / args.concurrency
    with ServerProcess(latency=args.latency) as server:
        suffix = str(os.getpid())
        endpoint = create_endpoint_for_fake_server(server, name=f"bench-exp-{suffix}", max_retries=0)
        user, _ = get_user_model().objects.get_or_create(username="bench-experiment")
        dataset = services.dataset_create(
            name=f"bench-{suffix}-{time.time_ns()}",
            owner=user,
            items=[
                {"messages": [{"role": "user", "content": f"item {i}"}], "expected": f"item {i}"}
                for i in range(args.items)
            ],
        )
        experiment = services.experiment_create(
            name="bench",
            dataset=dataset,
            concurrency=args.concurrency,
            variants=[{"name": f"v{i}", "endpoint": endpoint.name} for i in range(args.variants)],
            evaluators=[{"type": "contains", "name": "echo"}],
            owner=user,
        )
        # warm the platform path (endpoint cache, litellm import, connection pool) outside the timing
        from agent_platform.llm.client import complete

        complete(endpoint=endpoint.name, messages=[{"role": "user", "content": "warm"}])

        started, cpu_started = time.perf_counter(), time.process_time()
        services.experiment_start(experiment=experiment)  # eager: runs to the end here
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        experiment.refresh_from_db()
        assert experiment.status == ExperimentStatus.COMPLETED, (experiment.status, experiment.error_message)
        results = list(ExperimentResult.objects.filter(experiment=experiment))
        done = sum(1 for r in results if r.status == "completed")
        assert done == calls, f"{done} of {calls} completed"
        samples = [r.latency_ms for r in results if r.latency_ms is not None]

        bare_cpu_started = time.process_time()
        bare_wall, bare_samples = asyncio.run(_bare(server, calls=calls, concurrency=args.concurrency))
        bare_cpu = time.process_time() - bare_cpu_started

    ours = Stats.from_samples("platform runner", samples, wall)
    bare = Stats.from_samples("bare litellm", bare_samples, bare_wall)
    ratio = wall / ideal
    bare_ratio = bare_wall / ideal
    print(
        f"{args.items} items x {args.variants} variants, {args.latency * 1000:.0f} ms latency, concurrency "
        f"{args.concurrency}: ideal {ideal:.2f} s; platform {wall:.2f} s (ratio {ratio:.2f}, "
        f"{calls / wall:.0f} items/s); bare litellm {bare_wall:.2f} s (ratio {bare_ratio:.2f})"
    )
    print(
        f"CPU per execution: platform {cpu / calls * 1000:.2f} ms, bare litellm {bare_cpu / calls * 1000:.2f} ms "
        f"(the ideal needs at most {args.latency / args.concurrency * 1000:.2f} ms of CPU per execution)"
    )
    return report(
        name="experiment",
        title="Experiment runner: wall time vs ideal (items x variants x latency / concurrency)",
        comparisons=[
            Comparison(
                f"{calls} executions @c{args.concurrency}",
                ours,
                bare,
                target="wall/ideal <= 1.2",
                met=ratio <= 1.2,
                note=f"wall {wall:.2f}s, ideal {ideal:.2f}s, ratio {ratio:.2f}; bare ratio {bare_ratio:.2f}",
            )
        ],
        extra={
            "items": args.items,
            "variants": args.variants,
            "latency_s": args.latency,
            "concurrency": args.concurrency,
            "ideal_s": ideal,
            "wall_s": wall,
            "ratio_to_ideal": ratio,
            "bare_wall_s": bare_wall,
            "bare_ratio_to_ideal": bare_ratio,
            "cpu_ms_per_execution": cpu / calls * 1000,
            "bare_cpu_ms_per_execution": bare_cpu / calls * 1000,
        },
    )


if __name__ == "__main__":
    main()
