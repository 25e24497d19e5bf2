"""Real models are priced out of the box: `migrate` imports litellm's bundled cost map, beat refreshes it daily, and
a sync adds an effective-dated row when a price changes (the old row keeps pricing the calls made before)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from agent_platform.observability.hooks import hub
from costs.models import CostRecord, Price
from costs.services import cost_records_recompute, prices_import_litellm
from tests.support.fixtures import create_endpoint_for_fake_server
from tests.support.sinks import llm_record

GPT = {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}
CLAUDE = {"litellm_provider": "anthropic", "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05}


@pytest.mark.django_db
def test_on_a_fresh_database_a_real_model_call_is_priced_with_no_command_run(fake_openai):
    """The test database is made by `migrate` alone: its post-migrate step imported litellm's bundled map."""
    from agent_platform.llm.client import complete

    fake_openai.model = "gpt-4o-mini"
    create_endpoint_for_fake_server(fake_openai, name="mini")
    response = complete(endpoint="mini", messages=[{"role": "user", "content": "How many legs has a spider?"}])
    hub.flush()
    record = CostRecord.objects.get()
    assert (record.provider, record.model) == ("openai", "openai/gpt-4o-mini")
    assert not record.unpriced and record.cost > 0 and record.cost == response.cost
    assert record.price.source == "litellm" and record.price.model == "gpt-4o-mini"


@pytest.mark.django_db
def test_migrate_again_changes_nothing_when_the_bundled_map_is_unchanged():
    from django.core.management import call_command

    rows = Price.objects.filter(source="litellm").count()
    assert rows > 1000  # the bundled map, imported when the test database was migrated
    call_command("migrate", verbosity=0)
    assert Price.objects.filter(source="litellm").count() == rows
    assert prices_import_litellm().created == prices_import_litellm().updated == 0


@pytest.mark.django_db
def test_a_litellm_without_its_cost_map_does_not_fail_migrate(monkeypatch, caplog):
    from django.core.management import call_command

    from costs.services import prices

    monkeypatch.setattr(prices, "LITELLM_MAP_FILE", "no-such-map.json")  # a broken litellm install
    rows = Price.objects.count()
    call_command("migrate", verbosity=0)
    assert Price.objects.count() == rows
    assert "prices were not synced" in caplog.text


@pytest.mark.django_db
def test_a_changed_price_adds_a_row_effective_from_now_and_the_old_row_keeps_its_history():
    first = prices_import_litellm(cost_map={"acme-gpt-x": GPT, "acme-claude-x": CLAUDE})
    assert (first.created, first.updated) == (2, 0)
    old = Price.objects.get(model="acme-gpt-x")
    assert old.effective_from == datetime(2000, 1, 1, tzinfo=UTC)  # a first price also prices older calls
    before = timezone.now()
    hub.emit_llm_call(llm_record(model="acme-gpt-x", provider="openai", input_tokens=1_000_000, output_tokens=0))
    hub.flush()

    cheaper = {"acme-gpt-x": {**GPT, "input_cost_per_token": 2e-06}, "acme-claude-x": CLAUDE}
    second = prices_import_litellm(cost_map=cheaper)
    assert (second.created, second.updated, second.unchanged) == (0, 1, 1)
    old.refresh_from_db()
    assert old.input_per_million == Decimal("2.5") and old.effective_from == datetime(2000, 1, 1, tzinfo=UTC)
    new = Price.objects.filter(model="acme-gpt-x").exclude(pk=old.pk).get()
    assert new.input_per_million == Decimal("2") and new.effective_from >= before
    assert Price.objects.filter(model="acme-claude-x").count() == 1, "an unchanged price adds nothing"

    # the call made before the change stays priced at the old row, even when recomputed; a new call gets the new one
    recorded = CostRecord.objects.get()
    cost_records_recompute(start=recorded.created_at, end=recorded.created_at + timedelta(seconds=1))
    recorded.refresh_from_db()
    assert recorded.price_id == old.pk and recorded.cost == Decimal("2.5")
    hub.emit_llm_call(llm_record(model="acme-gpt-x", provider="openai", input_tokens=1_000_000, output_tokens=0))
    hub.flush()
    assert CostRecord.objects.order_by("-created_at").first().cost == Decimal("2")


@pytest.mark.django_db
def test_a_sync_with_unchanged_prices_adds_nothing():
    prices_import_litellm(cost_map={"acme-gpt-x": GPT, "acme-claude-x": CLAUDE})
    mine = Price.objects.filter(model__startswith="acme-")
    rows = list(mine.values_list("pk", "updated_at"))
    history = Price.history.count()
    again = prices_import_litellm(cost_map={"acme-gpt-x": dict(GPT), "acme-claude-x": dict(CLAUDE)})
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert list(mine.values_list("pk", "updated_at")) == rows
    assert Price.history.count() == history


def test_beat_syncs_prices_daily_on_the_maintenance_queue():
    from celery.schedules import crontab

    from agent_platform.celery import PRICE_SYNC_ENTRY, app, maintenance_queue

    entry = app.conf.beat_schedule[PRICE_SYNC_ENTRY]
    assert entry["task"] == "costs.import_prices"
    schedule = entry["schedule"]
    assert isinstance(schedule, crontab) and schedule.day_of_week == set(range(7)) and len(schedule.hour) == 1
    assert app.amqp.router.route({}, "costs.import_prices")["queue"].name == maintenance_queue()


@pytest.mark.django_db(transaction=True)  # the scheduler closes "old" connections, as beat does between ticks
def test_the_database_scheduler_replaces_the_weekly_sync_with_the_daily_one():
    from django_celery_beat.models import CrontabSchedule, PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from agent_platform.celery import PRICE_SYNC_ENTRY, app

    weekly, _ = CrontabSchedule.objects.get_or_create(minute="40", hour="4", day_of_week="1", timezone="UTC")
    PeriodicTask.objects.update_or_create(  # as costs' migration 0002 left it on existing databases
        name=PRICE_SYNC_ENTRY, defaults={"task": "costs.import_prices", "crontab": weekly}
    )
    DatabaseScheduler(app=app).setup_schedule()
    (task,) = PeriodicTask.objects.filter(task="costs.import_prices")
    assert task.crontab.day_of_week == "*" and task.crontab.hour == "4" and task.enabled
