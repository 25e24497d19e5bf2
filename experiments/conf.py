"""Settings of the experiments app: a Django setting of the same name wins, else the environment, else the default.

| name | default | meaning |
|---|---|---|
| EXPERIMENTS_BACKGROUND | true | On the embedded default (eager Celery), run experiments in a background thread |
| EXPERIMENTS_HEARTBEAT_TIMEOUT | 60 | Seconds without a heartbeat after which a running experiment may be resumed |
| EXPERIMENTS_ENDPOINT_CONCURRENCY | 64 | Most calls in flight per model endpoint per process, across experiments |
| EXPERIMENTS_DATASET_MAX_ITEMS | 100000 | Most items in one dataset |
| EXPERIMENTS_IMPORT_MAX_BYTES | 52428800 | Largest dataset file accepted for import (bytes) |
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "EXPERIMENTS_BACKGROUND": True,
    "EXPERIMENTS_HEARTBEAT_TIMEOUT": 60.0,
    "EXPERIMENTS_ENDPOINT_CONCURRENCY": 64,
    "EXPERIMENTS_DATASET_MAX_ITEMS": 100_000,
    "EXPERIMENTS_IMPORT_MAX_BYTES": 50 * 1024 * 1024,
}


def get(name: str) -> Any:
    default = DEFAULTS[name]
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    if value is None:
        return default
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).strip().lower() not in ("0", "false", "no", "off", "")
    return type(default)(value)
