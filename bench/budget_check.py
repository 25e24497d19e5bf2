"""The budget check before every LLM call, in an event loop: the costs hook (the budgets' version stamp read from
Redis in a worker thread, shared by the calls in flight) vs the bare work it stands for, one redis-py GET per call
in a worker thread. The caller has no hard budget (the common case: the hook reserves nothing). 2,000 calls each,
sequential and 16 concurrent. Target: added p50 <= 0.2 ms. Needs REDIS_URL (without it the stamp lives in the
process's memory and there is nothing to compare).

    REDIS_URL=redis://127.0.0.1:6379/0 python -m bench.budget_check [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets

from bench.harness import Comparison, measure_async, report, setup_django


async def run(calls: int) -> list[Comparison]:
    import redis

    from agent_platform.observability.context import Caller
    from agent_platform.observability.hooks import LLMCallEstimate
    from costs.budgets import VERSION_KEY
    from costs.observer import observer

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    caller = Caller(user_id=10**9)  # nobody's budget applies

    def estimate() -> LLMCallEstimate:
        return LLMCallEstimate(
            attempt_id=secrets.token_hex(8), endpoint="mock/demo", model="mock/demo", provider="mock",
            estimated_input_tokens=100, max_output_tokens=100, caller=caller,
        )  # fmt: skip

    async def ours() -> None:
        await observer.abefore_llm_call(estimate())

    async def bare() -> None:
        await asyncio.get_running_loop().run_in_executor(None, client.get, VERSION_KEY)

    comparisons = []
    for concurrency in (1, 16):
        baseline = await measure_async(bare, iterations=calls, warmup=50, concurrency=concurrency)
        platform = await measure_async(ours, iterations=calls, warmup=50, concurrency=concurrency)
        comparisons.append(
            Comparison(
                "stamp check, sequential" if concurrency == 1 else f"stamp check, {concurrency} concurrent",
                platform,
                baseline,
                target="added p50 <= 0.2 ms",
                met=platform.p50_ms - baseline.p50_ms <= 0.2,
                note="bare: one redis-py GET per call in a worker thread",
            )
        )
    return comparisons


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    setup_django()
    if not os.environ.get("REDIS_URL"):
        print("budget_check: skipped (needs REDIS_URL)")
        return
    comparisons = asyncio.run(run(args.calls))
    report(
        name="budget_check", title="budget check before an LLM call (no hard budget applies)", comparisons=comparisons
    )


if __name__ == "__main__":
    main()
