"""Writes of the experiments app, one module per concern; this package is what the app's views, tasks and runner use.

datasets (items, imports), lifecycle (create, start, cancel, resume), results (the runner's bookkeeping), scores.
"""

from experiments.services.datasets import (
    dataset_create,
    dataset_delete,
    dataset_import,
    dataset_items_add,
    dataset_items_from_spans,
    dataset_new_version,
    max_dataset_items,
)
from experiments.services.lifecycle import (
    background_runs,
    experiment_baseline_default,
    experiment_cancel,
    experiment_create,
    experiment_start,
    experiments_resume_stale,
    heartbeat_timeout,
)
from experiments.services.results import (
    experiment_finish,
    experiment_heartbeat,
    experiment_mark_running,
    results_claim,
    results_release,
    results_store,
)
from experiments.services.scores import human_score_add

__all__ = [
    "background_runs",
    "dataset_create",
    "dataset_delete",
    "dataset_import",
    "dataset_items_add",
    "dataset_items_from_spans",
    "dataset_new_version",
    "experiment_baseline_default",
    "experiment_cancel",
    "experiment_create",
    "experiment_finish",
    "experiment_heartbeat",
    "experiment_mark_running",
    "experiment_start",
    "experiments_resume_stale",
    "heartbeat_timeout",
    "human_score_add",
    "max_dataset_items",
    "results_claim",
    "results_release",
    "results_store",
]
