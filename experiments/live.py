"""The live A/B report: prompt versions compared on live traffic (the spans of LLM calls made with each version).

The prompt store splits a label between versions (sticky per conversation/user); every LLM span records the prompt
name and version it was made with. This report groups a prompt's live LLM spans (experiment traffic excluded) by
version: calls, errors, latency p50/p95, cost, tokens, human scores on their traces, and — when evaluators are
given — evaluator scores on a sample of each version's outputs. Versions are compared against a baseline with
unpaired tests (live traffic has no pairs): Fisher's exact test for error and thumbs-up rates, Mann-Whitney U for
latency, cost and evaluator scores, each stated in plain words.

Spans are read through the traces app's selectors (`prompt_llm_calls`, `llm_call_samples`), as plain dicts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import bind_caller
from experiments import stats
from experiments.evaluators import EvaluationInput, build_evaluators, run_evaluator
from experiments.selectors import human_score_summary, human_scores_for

MAX_SPANS = 200_000
MAX_SAMPLE = 500


def _text(output: Any) -> str:
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, dict) and isinstance(output.get("content"), str):
        return output["content"]
    import json

    return json.dumps(output, ensure_ascii=False)


def live_report(
    *,
    prompt_name: str,
    user,
    days: int = 7,
    end: datetime | None = None,
    baseline_version: int | None = None,
    evaluators: list[dict[str, Any]] | None = None,
    sample: int = 100,
) -> dict[str, Any]:
    if not prompt_name:
        raise PlatformError("prompt is required", code="VALIDATION_ERROR", field="prompt")
    if not 1 <= days <= 90:
        raise PlatformError("days must be between 1 and 90", code="VALIDATION_ERROR", field="days")
    if not 1 <= sample <= MAX_SAMPLE:
        raise PlatformError(f"sample must be between 1 and {MAX_SAMPLE}", code="VALIDATION_ERROR", field="sample")
    from traces.selectors import llm_call_samples, prompt_llm_calls  # a sink: imported where it is read

    configured = build_evaluators(evaluators or [])
    end = end or timezone.now()
    start = end - timedelta(days=days)
    spans = prompt_llm_calls(prompt_name=prompt_name, start=start, end=end, user=user, limit=MAX_SPANS)
    by_version: dict[int, list[dict[str, Any]]] = {}
    for span in spans:
        if span["prompt_version"] is not None:
            by_version.setdefault(span["prompt_version"], []).append(span)
    scores = list(human_scores_for(trace_ids=sorted({s["trace_id"] for s in spans})))
    versions = []
    detail: dict[int, dict[str, Any]] = {}
    for version in sorted(by_version):
        rows = by_version[version]
        trace_ids = {s["trace_id"] for s in rows}
        human = [h for h in scores if h.trace_id in trace_ids]
        ok = [s for s in rows if s["status"] == "ok"]
        latencies = [float(s["duration_ms"]) for s in ok]
        costs = [Decimal(s["cost"]) for s in ok if s["cost"] is not None]
        pct = stats.percentiles(latencies)
        thumbs = [h.value for h in human if h.kind == "thumbs" and h.value is not None]
        variant_names = {s["ab_variant"] for s in rows if s["ab_variant"]}
        entry: dict[str, Any] = {
            "version": version,
            "ab_variants": sorted(variant_names),
            "calls": len(rows),
            "traces": len(trace_ids),
            "errors": len(rows) - len(ok),
            "error_rate": round((len(rows) - len(ok)) / len(rows), 4) if rows else None,
            "latency_ms": {
                "p50": None if pct["p50"] is None else round(pct["p50"], 1),
                "p95": None if pct["p95"] is None else round(pct["p95"], 1),
            },
            "cost": {
                "total": format(sum(costs, Decimal(0)).normalize(), "f") if costs else None,
                "mean": format((sum(costs, Decimal(0)) / len(costs)).normalize(), "f") if costs else None,
            },
            "tokens_mean": round(sum(s["input_tokens"] + s["output_tokens"] for s in ok) / len(ok), 1) if ok else None,
            "human": human_score_summary(scores=human),
            "scores": {},
        }
        evaluated: dict[str, list[float]] = {}
        if configured:
            sample_rows = llm_call_samples(span_ids=[s["id"] for s in ok], limit=sample)
            for c in configured:
                values, passes, failures = [], [], 0
                for row in sample_rows:
                    data = EvaluationInput(
                        output=_text(row["output"]),
                        input=row["input"],
                        latency_ms=row["duration_ms"],
                        cost=None if row["cost"] is None else Decimal(row["cost"]),
                    )
                    with bind_caller(user_id=getattr(user, "pk", None)):  # an LLM judge reads its prompt as the user
                        result = run_evaluator(c, data)
                    if result.get("error_code"):
                        failures += 1
                        continue
                    values.append(result["score"])
                    passes.append(result["passed"])
                ci = stats.bootstrap_ci(values)
                evaluated[c.key] = values
                entry["scores"][c.key] = {
                    "mean": None if ci.mean is None else round(ci.mean, 4),
                    "ci_low": None if ci.low is None else round(ci.low, 4),
                    "ci_high": None if ci.high is None else round(ci.high, 4),
                    "n": ci.n,
                    "pass_rate": round(sum(passes) / len(passes), 4) if passes else None,
                    "evaluator_failures": failures,
                }
        versions.append(entry)
        detail[version] = {
            "calls": len(rows),
            "errors": len(rows) - len(ok),
            "latencies": latencies,
            "costs": [float(c) for c in costs],
            "thumbs": thumbs,
            "scores": evaluated,
        }
    comparisons = []
    if versions:
        baseline = baseline_version if baseline_version in detail else versions[0]["version"]
        base = detail[baseline]
        for version in sorted(detail):
            if version == baseline:
                continue
            other = detail[version]
            names = {"a_name": f"v{baseline}", "b_name": f"v{version}"}
            metrics: dict[str, Any] = {}
            sentences: list[str] = []
            tests = {
                "error rate": (
                    stats.fisher_rates(base["errors"], base["calls"], other["errors"], other["calls"]),
                    False,
                ),
                "latency": (stats.mann_whitney(base["latencies"], other["latencies"]), False),
                "cost": (stats.mann_whitney(base["costs"], other["costs"]), False),
                "thumbs up": (
                    stats.fisher_rates(
                        int(sum(base["thumbs"])), len(base["thumbs"]), int(sum(other["thumbs"])), len(other["thumbs"])
                    ),
                    True,
                ),
            }
            for key in base["scores"]:
                tests[key] = (stats.mann_whitney(base["scores"][key], other["scores"].get(key, [])), True)
            for metric, (result, higher_is_better) in tests.items():
                n = min(result.n_a, result.n_b)
                sentence = stats.verdict(
                    metric=metric,
                    p_value=result.p_value,
                    diff=result.diff,
                    higher_is_better=higher_is_better,
                    n=n,
                    **names,
                )
                if n:
                    sentences.append(sentence)
                metrics[metric] = {**result.as_dict(), "verdict": sentence}
            comparisons.append(
                {
                    "version": version,
                    "baseline": baseline,
                    "metrics": metrics,
                    "verdict": stats.join_verdicts(sentences),
                }
            )
    return {
        "prompt": prompt_name,
        "start": start,
        "end": end,
        "calls": len(spans),
        "versions": versions,
        "comparisons": comparisons,
    }
