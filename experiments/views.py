"""Dashboard pages: experiments and datasets list, an experiment's progress and comparison report."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from agent_platform.api.errors import PlatformError
from experiments import selectors, services
from experiments.models import ACTIVE_STATUSES
from experiments.report import build_report


@login_required
def experiment_list(request):
    experiments = selectors.experiments_visible_to(request.user)
    page = Paginator(experiments, 25).get_page(request.GET.get("page"))
    rows = [{"experiment": e, "progress": selectors.experiment_progress(experiment=e)} for e in page]
    datasets = selectors.datasets_visible_to(request.user)[:50]
    return render(request, "experiments/list.html", {"page": page, "rows": rows, "datasets": datasets})


def _experiment_or_404(request, experiment_id: int):
    try:
        return selectors.experiment_get(user=request.user, experiment_id=experiment_id)
    except PlatformError:
        raise Http404("No such experiment") from None


@login_required
def experiment_detail(request, experiment_id: int):
    experiment = _experiment_or_404(request, experiment_id)
    only_disagreements = request.GET.get("only") == "disagree"
    report = build_report(experiment=experiment, item_limit=None if only_disagreements else 200)
    if only_disagreements:
        report["items"] = [item for item in report["items"] if _disagree(item, report["evaluators"])][:200]
    for variant in report["variants"]:
        variant["score_rows"] = [(key, variant["scores"].get(key) or {}) for key in report["evaluators"]]
    variant_names = [v["name"] for v in report["variants"]]
    for item in report["items"]:
        item["cells"] = [(name, item["outputs"].get(name)) for name in variant_names]
    return render(
        request,
        "experiments/detail.html",
        {
            "experiment": experiment,
            "report": report,
            "variant_names": variant_names,
            "running": experiment.status in ACTIVE_STATUSES,
            "only_disagreements": only_disagreements,
        },
    )


def _disagree(item: dict, evaluators: list[str]) -> bool:
    """The variants did not all do the same on this item: different status, or pass/fail on some evaluator."""
    outputs = [o for o in item["outputs"].values() if o is not None]
    if len({o["status"] for o in outputs}) > 1:
        return True
    for key in evaluators:
        verdicts = {bool((o["scores"].get(key) or {}).get("passed")) for o in outputs}
        if len(verdicts) > 1:
            return True
    return False


@login_required
@require_POST
def experiment_action(request, experiment_id: int, action: str):
    experiment = _experiment_or_404(request, experiment_id)
    try:
        if action == "start":
            services.experiment_start(experiment=experiment)
            messages.success(request, "Experiment started.")
        elif action == "cancel":
            services.experiment_cancel(experiment=experiment)
            messages.success(request, "Experiment cancelled.")
        else:
            raise Http404("No such action")
    except PlatformError as exc:
        messages.error(request, f"{exc.code}: {exc.message}")
    return redirect("experiments-detail", experiment_id=experiment.id)


@login_required
@require_POST
def result_score(request, experiment_id: int, result_id: int):
    try:
        result = selectors.result_get(user=request.user, experiment_id=experiment_id, result_id=result_id)
    except PlatformError:
        raise Http404("No such result") from None
    kind = request.POST.get("kind", "thumbs")
    raw = request.POST.get("value", "")
    try:
        value = float(raw) if raw else None
        services.human_score_add(
            result=result,
            trace_id=result.trace_id,
            kind=kind,
            value=value,
            label=request.POST.get("label", ""),
            comment=request.POST.get("comment", ""),
            user=request.user,
        )
        messages.success(request, "Score saved.")
    except ValueError:
        messages.error(request, "VALIDATION_ERROR: value must be a number")
    except PlatformError as exc:
        messages.error(request, f"{exc.code}: {exc.message}")
    return redirect(f"/dashboard/experiments/{experiment_id}/#item-{result.item_id}")


@login_required
def live_ab(request):
    from experiments.live import live_report

    prompt = (request.GET.get("prompt") or "").strip()
    report, error = None, ""
    if prompt:
        try:
            days = int(request.GET.get("days") or 7)
            report = live_report(prompt_name=prompt, user=request.user, days=days)
        except ValueError:
            error = "days must be a number"
        except PlatformError as exc:
            error = f"{exc.code}: {exc.message}"
    return render(request, "experiments/live.html", {"prompt": prompt, "report": report, "error": error})


@login_required
@require_POST
def trace_score(request):
    """Thumbs, a 1-5 rating or a label on any trace, from a dashboard form (see `_trace_score_form.html`)."""
    raw = request.POST.get("value", "")
    try:
        services.human_score_add(
            trace_id=(request.POST.get("trace_id") or "").strip(),
            span_id=(request.POST.get("span_id") or "").strip(),
            kind=request.POST.get("kind", "thumbs"),
            value=float(raw) if raw else None,
            label=request.POST.get("label", ""),
            comment=request.POST.get("comment", ""),
            user=request.user,
        )
        messages.success(request, "Score saved.")
    except ValueError:
        messages.error(request, "VALIDATION_ERROR: value must be a number")
    except PlatformError as exc:
        messages.error(request, f"{exc.code}: {exc.message}")
    target = request.POST.get("next") or "/dashboard/experiments/"
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "/dashboard/experiments/"
    return redirect(target)


@login_required
def dataset_detail(request, dataset_id: int):
    try:
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
    except PlatformError:
        raise Http404("No such dataset") from None
    row_errors = []
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            messages.error(request, "VALIDATION_ERROR: choose a .csv or .jsonl file")
        else:
            fmt = "csv" if upload.name.lower().endswith(".csv") else "jsonl"
            try:
                count = services.dataset_import(dataset=dataset, fmt=fmt, content=upload.read())
                messages.success(request, f"Imported {count} items.")
                return redirect("experiments-dataset", dataset_id=dataset.id)
            except PlatformError as exc:
                messages.error(request, f"{exc.code}: {exc.message}")
                row_errors = exc.details.get("rows", [])
    page = Paginator(dataset.items.order_by("position"), 50).get_page(request.GET.get("page"))
    experiments = selectors.experiments_visible_to(request.user).filter(dataset=dataset)
    return render(
        request,
        "experiments/dataset.html",
        {"dataset": dataset, "page": page, "row_errors": row_errors, "experiments": experiments},
    )
