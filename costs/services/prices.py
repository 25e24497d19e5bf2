"""Prices: saved by hand, synced (effective-dated) from litellm's bundled map, imported at migrate."""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.db import connections, router, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from simple_history.utils import bulk_create_with_history

from costs.models import Price
from costs.pricing import bump_price_version, price_cache
from costs.validation import model_validate

ZERO = Decimal(0)

logger = logging.getLogger("costs")


@transaction.atomic
def price_save(*, price: Price) -> Price:
    model_validate(price)
    price.save()
    price_cache.invalidate()
    transaction.on_commit(bump_price_version)
    return price


@transaction.atomic
def price_delete(*, price: Price) -> None:
    price.delete()
    price_cache.invalidate()
    transaction.on_commit(bump_price_version)


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0  # re-priced: a new row effective from now beside the old one
    unchanged: int = 0
    skipped_manual: int = 0
    skipped_invalid: int = 0


def _per_million(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return (Decimal(str(value)) * 1_000_000).quantize(Decimal("0.0000000001"))
    except (InvalidOperation, ValueError):
        return None


LITELLM_MAP_FILE = "model_prices_and_context_window_backup.json"
FIRST_IMPORT_FROM = datetime(2000, 1, 1, tzinfo=UTC)  # a model's first price also prices calls recorded before it


def litellm_bundled_cost_map() -> dict[str, dict]:
    """The cost map packaged with the installed litellm, read from its file (never fetched from the internet, and
    without importing litellm, which takes seconds: this runs on every `migrate`)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("litellm is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / LITELLM_MAP_FILE
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


@transaction.atomic
def prices_import_litellm(*, cost_map: dict[str, dict] | None = None) -> ImportResult:
    """Sync `source=litellm` prices with litellm's bundled cost map. A model's first price is effective from
    2000-01-01; a changed price adds a new row effective from now (the old row keeps pricing earlier calls); an
    unchanged price writes nothing. A model that has a manual price (same provider and model) is left alone:
    prices edited by hand always win."""
    if cost_map is None:
        cost_map = litellm_bundled_cost_map()
    result = ImportResult()
    now = timezone.now()
    manual = set(Price.objects.filter(source=Price.Source.MANUAL).values_list("provider", "model"))
    current: dict[tuple[str, str], Price] = {}  # the latest litellm row of each (provider, model)
    for price in Price.objects.filter(source=Price.Source.LITELLM).order_by("effective_from", "id"):
        current[(price.provider, price.model)] = price
    new_rows: list[Price] = []
    for model, info in cost_map.items():
        if model == "sample_spec" or not isinstance(info, dict):
            continue
        provider = str(info.get("litellm_provider") or "")[:64]
        input_price = _per_million(info.get("input_cost_per_token"))
        output_price = _per_million(info.get("output_cost_per_token"))
        if input_price is None and output_price is None:
            result.skipped_invalid += 1
            continue
        if (provider, model) in manual or ("", model) in manual or len(model) > 200:
            result.skipped_manual += 1
            continue
        values = {
            "input_per_million": input_price or ZERO,
            "output_per_million": output_price or ZERO,
            "cached_input_per_million": _per_million(info.get("cache_read_input_token_cost")),
            "cache_write_per_million": _per_million(info.get("cache_creation_input_token_cost")),
            "reasoning_per_million": _per_million(info.get("output_cost_per_reasoning_token")),
            "per_request": Decimal(str(info.get("input_cost_per_request") or 0)).quantize(Decimal("0.0000000001")),
        }
        row = current.get((provider, model))
        if row is not None and all(getattr(row, k) == v for k, v in values.items()):
            result.unchanged += 1
            continue
        new_rows.append(
            Price(
                provider=provider,
                model=model,
                source=Price.Source.LITELLM,
                effective_from=FIRST_IMPORT_FROM if row is None else now,
                notes="imported from litellm",
                **values,
            )
        )
        if row is None:
            result.created += 1
        else:
            result.updated += 1
    # one INSERT per 500 rows: a fresh database takes the whole map (thousands of rows) on its first `migrate`
    bulk_create_with_history(new_rows, Price, batch_size=500)
    if new_rows:
        transaction.on_commit(bump_price_version)
    return result


def prices_import_on_migrate(*, using: str) -> ImportResult | None:
    """After `migrate`: bring the litellm prices up to date, so real models are priced on a fresh database with no
    command run (and after an upgrade of litellm). Nothing when the price table is not at its latest migration
    (a partial or backwards `migrate`) or lives in another database."""
    if using != router.db_for_write(Price):
        return None
    connection = connections[using]
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    applied = MigrationRecorder(connection).applied_migrations()
    if any(leaf not in applied for leaf in loader.graph.leaf_nodes(Price._meta.app_label)):
        return None
    try:
        cost_map = litellm_bundled_cost_map()
    except (OSError, RuntimeError, ValueError):  # a litellm without its map must not fail the deploy's migrate
        logger.warning("litellm's bundled cost map could not be read: prices were not synced", exc_info=True)
        return None
    return prices_import_litellm(cost_map=cost_map)
