"""The comparison report of an experiment (read-only).

Per variant: mean score per evaluator with a bootstrap 95% CI, pass rate, errors, cost, latency p50/p95, tokens.
Against the baseline: per evaluator a paired permutation test on scores and an exact McNemar test on pass/fail
(the verdict uses McNemar when every score is 0 or 1, the permutation test otherwise), paired tests on latency and
cost, and one plain-words verdict per variant.

Scoring rules: a result whose call failed counts as score 0 / not passed for every evaluator (the variant produced
nothing usable); an evaluator that itself failed on an item (`EVALUATOR_FAILED`) leaves that item out of that
evaluator's numbers. Paired tests use the items both variants have a value for.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

from experiments import stats
from experiments.evaluators import build_evaluators
from experiments.models import Experiment, ExperimentResult, ResultStatus
from experiments.selectors import experiment_progress, human_score_summary, human_scores_for

DEFAULT_ITEM_LIMIT = 100


def _score_of(result: ExperimentResult, key: str) -> tuple[float | None, bool | None]:
    if result.status == ResultStatus.FAILED:
        return 0.0, False
    if result.status != ResultStatus.COMPLETED:
        return None, None
    entry = (result.scores or {}).get(key)
    if not isinstance(entry, dict) or entry.get("error_code") or entry.get("score") is None:
        return None, None
    return float(entry["score"]), bool(entry.get("passed"))


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def _variant_summary(
    variant, results: list[ExperimentResult], keys: list[str], human: dict, *, with_stats: bool = True
) -> dict[str, Any]:
    completed = [r for r in results if r.status == ResultStatus.COMPLETED]
    failed = [r for r in results if r.status == ResultStatus.FAILED]
    finished = completed + failed
    scores: dict[str, Any] = {}
    for key in keys:
        values, passes, evaluator_failures = [], [], 0
        for r in finished:
            score, passed = _score_of(r, key)
            if score is None:
                evaluator_failures += 1
                continue
            values.append(score)
            passes.append(passed)
        if with_stats:
            ci = stats.bootstrap_ci(values)
        else:  # while running: means only, intervals when it finishes
            ci = stats.Interval(mean=sum(values) / len(values) if values else None, low=None, high=None, n=len(values))
        scores[key] = {
            "mean": _round(ci.mean),
            "ci_low": _round(ci.low),
            "ci_high": _round(ci.high),
            "n": ci.n,
            "passed": sum(passes),
            "pass_rate": _round(sum(passes) / len(passes)) if passes else None,
            "evaluator_failures": evaluator_failures,
        }
    latencies = [r.latency_ms for r in completed if r.latency_ms is not None]
    costs = [r.cost for r in completed if r.cost is not None]
    pct = stats.percentiles(latencies)
    total_in = sum(r.input_tokens for r in completed)
    total_out = sum(r.output_tokens for r in completed)
    errors: dict[str, int] = {}
    for r in failed:
        errors[r.error_code or "UNKNOWN"] = errors.get(r.error_code or "UNKNOWN", 0) + 1
    return {
        "name": variant.name,
        "prompt": variant.prompt_ref,
        "endpoint": variant.endpoint,
        "params": variant.params,
        "results": len(results),
        "completed": len(completed),
        "failed": len(failed),
        "error_rate": _round(len(failed) / len(finished)) if finished else None,
        "errors": errors,
        "scores": scores,
        "cost": {
            "total": _money(sum(costs, Decimal(0))) if costs else None,
            "mean": _money(sum(costs, Decimal(0)) / len(costs)) if costs else None,
            "priced": len(costs),
        },
        "latency_ms": {
            "p50": _round(pct["p50"], 1),
            "p95": _round(pct["p95"], 1),
            "mean": _round(sum(latencies) / len(latencies), 1) if latencies else None,
        },
        "tokens": {
            "input": total_in,
            "output": total_out,
            "total": total_in + total_out,
            "mean": _round((total_in + total_out) / len(completed), 1) if completed else None,
        },
        "human": human,
    }


def _pairs(base: dict[int, ExperimentResult], other: dict[int, ExperimentResult], value) -> tuple[list, list]:
    a, b = [], []
    for item_id, result_b in other.items():
        result_a = base.get(item_id)
        if result_a is None:
            continue
        va, vb = value(result_a), value(result_b)
        if va is None or vb is None:
            continue
        a.append(va)
        b.append(vb)
    return a, b


def _quick_paired(a: list[float], b: list[float]) -> stats.PairedComparison:
    """Means only (no resampling): what the report shows while the experiment is still running."""
    if not a:
        return stats.PairedComparison(0, None, None, None, None, None, None, "pending")
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    return stats.PairedComparison(len(a), mean_a, mean_b, mean_b - mean_a, None, None, None, "pending")


RUNNING_VERDICT = "statistics when the experiment finishes"


def _compare(baseline, variant, base_rows, rows, keys: list[str], *, with_stats: bool = True) -> dict[str, Any]:
    paired_comparison = stats.paired_comparison if with_stats else _quick_paired
    metrics: dict[str, Any] = {}
    sentences: list[str] = []
    names = {"a_name": baseline.name, "b_name": variant.name}
    for key in keys:
        a, b = _pairs(base_rows, rows, lambda r, k=key: _score_of(r, k)[0])
        pa, pb = _pairs(base_rows, rows, lambda r, k=key: _score_of(r, k)[1])
        paired = paired_comparison(a, b)
        pass_test = stats.mcnemar(pa, pb)
        binary = bool(a) and all(v in (0.0, 1.0) for v in a + b)
        p_value = pass_test.p_value if binary else paired.p_value
        sentence = stats.verdict(metric=key, p_value=p_value, diff=paired.mean_diff, n=paired.n, **names)
        sentences.append(sentence)
        metrics[key] = {
            "n": paired.n,
            "mean_baseline": _round(paired.mean_a),
            "mean_variant": _round(paired.mean_b),
            "mean_diff": _round(paired.mean_diff),
            "ci_low": _round(paired.ci_low),
            "ci_high": _round(paired.ci_high),
            "p_value": _round(paired.p_value, 6),
            "test": paired.test,
            "mcnemar": {**pass_test.as_dict(), "p_value": _round(pass_test.p_value, 6)},
            "verdict_test": "mcnemar_exact" if binary else paired.test,
            "verdict": sentence,
        }

    def completed(attr):
        return lambda r: (
            float(getattr(r, attr)) if r.status == ResultStatus.COMPLETED and getattr(r, attr) is not None else None
        )

    for metric, attr in (("latency", "latency_ms"), ("cost", "cost")):
        a, b = _pairs(base_rows, rows, completed(attr))
        paired = paired_comparison(a, b)
        sentence = stats.verdict(
            metric=metric, p_value=paired.p_value, diff=paired.mean_diff, n=paired.n, higher_is_better=False, **names
        )
        if paired.n or metric == "latency":
            sentences.append(sentence)
        digits = 1 if metric == "latency" else 10
        metrics[metric] = {
            "n": paired.n,
            "mean_baseline": _round(paired.mean_a, digits),
            "mean_variant": _round(paired.mean_b, digits),
            "mean_diff": _round(paired.mean_diff, digits),
            "ci_low": _round(paired.ci_low, digits),
            "ci_high": _round(paired.ci_high, digits),
            "p_value": _round(paired.p_value, 6),
            "test": paired.test,
            "verdict": sentence,
        }
    if not with_stats:
        for entry in metrics.values():
            entry["verdict"] = RUNNING_VERDICT
        return {"variant": variant.name, "baseline": baseline.name, "metrics": metrics, "verdict": RUNNING_VERDICT}
    return {
        "variant": variant.name,
        "baseline": baseline.name,
        "metrics": metrics,
        "verdict": stats.join_verdicts(sentences),
    }


def _item_rows(experiment, variants, by_variant, keys: list[str], limit: int | None) -> tuple[list[dict], int]:
    items = experiment.dataset.items.order_by("position")
    total = items.count()
    if limit is not None:
        items = items[:limit]
    rows = []
    for item in items:
        outputs = {}
        for variant in variants:
            result = by_variant[variant.id].get(item.id)
            if result is None:
                outputs[variant.name] = None
                continue
            outputs[variant.name] = {
                "result_id": result.id,
                "status": result.status,
                "output": result.output,
                "error_code": result.error_code,
                "latency_ms": _round(result.latency_ms, 1),
                "cost": _money(result.cost),
                "tokens": result.total_tokens,
                "scores": {k: (result.scores or {}).get(k) for k in keys},
                "trace_id": result.trace_id,
            }
        rows.append(
            {
                "item_id": item.id,
                "position": item.position,
                "input": item.input,
                "messages": item.messages,
                "expected": item.expected,
                "outputs": outputs,
            }
        )
    return rows, total


def evaluator_keys(experiment: Experiment) -> list[str]:
    try:
        return [c.key for c in build_evaluators(experiment.evaluators)]
    except Exception:
        return [str(e.get("name") or e.get("type")) for e in experiment.evaluators or [] if isinstance(e, dict)]


def _cache_key(experiment: Experiment, item_limit: int | None) -> str:
    """Changes whenever anything the report shows changes (results, human scores, the experiment itself)."""
    from django.db.models import Count, Max

    from experiments.models import HumanScore

    results = ExperimentResult.objects.filter(experiment=experiment).aggregate(n=Count("id"), last=Max("finished_at"))
    human = HumanScore.objects.filter(result__experiment=experiment).aggregate(n=Count("id"), last=Max("id"))
    last = results["last"].timestamp() if results["last"] else 0
    return (
        f"experiments:report:{experiment.pk}:{experiment.updated_at.timestamp()}:{results['n']}:{last}:"
        f"{human['n']}:{human['last']}:{item_limit}"
    )


def build_report(
    *, experiment: Experiment, item_limit: int | None = DEFAULT_ITEM_LIMIT, with_stats: bool | None = None
) -> dict[str, Any]:
    """The report. `with_stats` (default: unless the experiment is still running) adds bootstrap intervals and
    paired tests; a finished experiment's report is cached until something in it changes."""
    from agent_platform.cache_safe import safe_cache as cache
    from experiments.models import ACTIVE_STATUSES

    running = experiment.status in ACTIVE_STATUSES
    if with_stats is None:
        with_stats = not running
    key = _cache_key(experiment, item_limit) if with_stats and not running else None
    if key is not None:
        cached = cache.get(key)
        if cached is not None:
            return cached
    report = _build_report(experiment=experiment, item_limit=item_limit, with_stats=with_stats)
    if key is not None:
        cache.set(key, report, 600)
    return report


def _build_report(*, experiment: Experiment, item_limit: int | None, with_stats: bool) -> dict[str, Any]:
    variants = list(experiment.variants.all())
    keys = evaluator_keys(experiment)
    results = list(ExperimentResult.objects.filter(experiment=experiment))
    by_variant: dict[int, dict[int, ExperimentResult]] = {v.id: {} for v in variants}
    for r in results:
        by_variant.setdefault(r.variant_id, {})[r.item_id] = r
    scores = list(human_scores_for(result_ids=[r.id for r in results]))
    result_variant = {r.id: r.variant_id for r in results}
    summaries = []
    for variant in variants:
        human = human_score_summary(scores=[s for s in scores if result_variant.get(s.result_id) == variant.id])
        summaries.append(
            _variant_summary(variant, list(by_variant[variant.id].values()), keys, human, with_stats=with_stats)
        )
    baseline = experiment.baseline or (variants[0] if variants else None)
    comparisons = [
        _compare(baseline, v, by_variant[baseline.id], by_variant[v.id], keys, with_stats=with_stats)
        for v in variants
        if baseline is not None and v.id != baseline.id
    ]
    items, item_total = _item_rows(experiment, variants, by_variant, keys, item_limit)
    return {
        "experiment": {
            "id": experiment.id,
            "name": experiment.name,
            "status": experiment.status,
            "dataset": {
                "id": experiment.dataset_id,
                "name": experiment.dataset.name,
                "version": experiment.dataset.version,
            },
            "baseline": baseline.name if baseline else None,
            "error_code": experiment.error_code,
            "error_message": experiment.error_message,
        },
        "progress": experiment_progress(experiment=experiment),
        "statistics": with_stats,
        "evaluators": keys,
        "variants": summaries,
        "comparisons": comparisons,
        "items": items,
        "items_total": item_total,
    }


def report_csv(*, experiment: Experiment) -> str:
    """One row per result (item × variant) with output, status, latency, tokens, cost and every score."""
    keys = evaluator_keys(experiment)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["item_position", "item_id", "input", "expected", "variant", "status", "error_code", "output"]
    header += ["latency_ms", "input_tokens", "output_tokens", "cost", "trace_id"]
    for key in keys:
        header += [f"{key}.score", f"{key}.passed", f"{key}.reason"]
    writer.writerow(header)
    rows = (
        ExperimentResult.objects.filter(experiment=experiment)
        .select_related("item", "variant")
        .order_by("item__position", "variant__position")
    )
    for r in rows.iterator(chunk_size=1000):
        line = [
            r.item.position,
            r.item_id,
            json.dumps(r.item.input, ensure_ascii=False),
            ""
            if r.item.expected is None
            else (r.item.expected if isinstance(r.item.expected, str) else json.dumps(r.item.expected)),
            r.variant.name,
            r.status,
            r.error_code,
            r.output,
            "" if r.latency_ms is None else round(r.latency_ms, 1),
            r.input_tokens,
            r.output_tokens,
            _money(r.cost) or "",
            r.trace_id,
        ]
        for key in keys:
            entry = (r.scores or {}).get(key) or {}
            line += [entry.get("score", ""), entry.get("passed", ""), entry.get("reason", "")]
        writer.writerow(line)
    return out.getvalue()
