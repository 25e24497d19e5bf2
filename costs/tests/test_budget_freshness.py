"""Hard budgets hold from the next call: a model with no price is refused (`PRICE_UNKNOWN`) rather than counted as
free, and a budget created, changed or deleted by any process applies to every process's next call (the budgets'
version stamp in the shared cache is read before each call; while the cache is down the index polls)."""

from __future__ import annotations

import secrets
import time
from decimal import Decimal

import pytest
from django.core.cache import cache

from agent_platform.api.errors import ERROR_REGISTRY, PlatformError
from agent_platform.cache_safe import cache_failed, reset_outages
from agent_platform.observability.context import Caller, bind_caller
from agent_platform.observability.hooks import LLMCallEstimate, hub
from costs.budgets import BUDGET_INDEX_OUTAGE_POLL, VERSION_KEY, BudgetIndex, budget_index
from costs.models import Budget, BudgetReservation, CostRecord
from costs.services import budget_delete, budget_save
from tests.support.fixtures import create_endpoint_for_fake_server


def estimate(caller: Caller, *, model: str = "mock/demo", provider: str = "mock") -> LLMCallEstimate:
    return LLMCallEstimate(
        attempt_id=secrets.token_hex(8),
        endpoint=model,
        model=model,
        provider=provider,
        estimated_input_tokens=1000,
        max_output_tokens=1000,
        caller=caller,
    )


def hard_budget(scope_id: int, **kw) -> Budget:
    fields = {"name": "alice hard", "scope": "user", "scope_id": scope_id, "period": "total", "limit": Decimal("5"),
              "enforcement": "hard", "thresholds": []}  # fmt: skip
    return budget_save(budget=Budget(**{**fields, **kw}))


# --- a model with no price -----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the LLM layer checks budgets from a worker thread (its own connection)
def test_a_hard_budget_refuses_a_model_with_no_price_before_the_vendor_is_called(user, fake_openai):
    from agent_platform.llm.client import complete

    fake_openai.model = "acme-unpriced-model"
    create_endpoint_for_fake_server(fake_openai, name="unpriced")
    hard_budget(user.pk, name="alice cap")
    with bind_caller(user_id=user.pk), pytest.raises(PlatformError) as refused:
        complete(endpoint="unpriced", messages=[{"role": "user", "content": "Hello"}])
    assert refused.value.code == "PRICE_UNKNOWN" and ERROR_REGISTRY["PRICE_UNKNOWN"].status == 402
    assert refused.value.details["model"] == "openai/acme-unpriced-model"
    assert refused.value.details["budget_ids"] == [Budget.objects.get().pk]
    assert fake_openai.requests == [], "refused before the vendor is asked"
    hub.flush()
    assert not CostRecord.objects.exists() and not BudgetReservation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_price_saved_by_another_process_a_moment_ago_lets_the_call_through(user, fake_openai):
    """This process's price table is checked against the stamp at most once a second; before refusing a call for
    want of a price, it asks the stamp at once."""
    from agent_platform.llm.client import complete
    from costs.models import Price
    from costs.pricing import VERSION_KEY as PRICE_VERSION_KEY
    from costs.pricing import price_cache

    fake_openai.model = "acme-new-model"
    create_endpoint_for_fake_server(fake_openai, name="new-model")
    hard_budget(user.pk, name="alice cap")
    price_cache.rows()  # this process has loaded the table (and checked its stamp) just now
    Price.objects.create(provider="openai", model="openai/acme-new-model", input_per_million=Decimal("1"),
                         output_per_million=Decimal("2"))  # fmt: skip
    cache.set(PRICE_VERSION_KEY, secrets.token_hex(8), None)  # what price_save does in the other process
    fake_openai.enqueue(content="Priced.")
    with bind_caller(user_id=user.pk):
        response = complete(endpoint="new-model", messages=[{"role": "user", "content": "Hello"}])
    assert response.content == "Priced." and response.cost > 0


@pytest.mark.django_db(transaction=True)
def test_without_a_hard_budget_a_model_with_no_price_is_called_and_recorded_unpriced(user, other_user, fake_openai):
    from agent_platform.llm.client import complete

    fake_openai.model = "acme-unpriced-model"
    create_endpoint_for_fake_server(fake_openai, name="unpriced")
    hard_budget(other_user.pk, name="bob cap")  # another user's hard budget does not apply
    hard_budget(user.pk, name="alice soft", enforcement="soft")  # a soft budget never refuses
    with bind_caller(user_id=user.pk):
        response = complete(endpoint="unpriced", messages=[{"role": "user", "content": "Hello"}])
    assert response.content and len(fake_openai.requests) == 1
    hub.flush()
    assert CostRecord.objects.get().unpriced


@pytest.mark.django_db
def test_a_priced_model_under_a_hard_budget_is_still_reserved_and_allowed(user):
    budget = hard_budget(user.pk)
    hub.before_llm_call(estimate(Caller(user_id=user.pk)))
    budget.refresh_from_db()
    assert budget.reserved > 0


# --- budgets changed by another process ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_hard_budget_created_by_another_process_refuses_the_next_call(user):
    caller = Caller(user_id=user.pk)
    hub.before_llm_call(estimate(caller))  # this process's index is loaded: no budget
    assert budget_index.loaded
    # another process: its budget_save writes the row and, on commit, bumps the shared stamp
    Budget.objects.create(name="spent", scope="user", scope_id=user.pk, period="total", limit=0, enforcement="hard")
    cache.set(VERSION_KEY, time.time_ns(), None)
    with pytest.raises(PlatformError) as refused:
        hub.before_llm_call(estimate(caller))
    assert refused.value.code == "BUDGET_EXCEEDED" and refused.value.details["budget"] == "spent"


@pytest.mark.django_db
def test_budgets_saved_and_deleted_through_the_service_reach_another_process_index(
    user, django_capture_on_commit_callbacks
):
    other = BudgetIndex()  # another process's index, loaded before the changes
    caller = Caller(user_id=user.pk)
    other.refresh()
    assert other.matching(caller) == []
    with django_capture_on_commit_callbacks(execute=True):
        budget = hard_budget(user.pk)
    other.refresh()
    assert [e.id for e in other.matching(caller, hard_only=True)] == [budget.pk]
    budget.enforcement = "soft"
    with django_capture_on_commit_callbacks(execute=True):
        budget_save(budget=budget)
    other.refresh()
    assert other.matching(caller, hard_only=True) == [] and len(other.matching(caller)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        budget_delete(budget=budget)
    other.refresh()
    assert other.matching(caller) == []


@pytest.mark.django_db
def test_a_call_reads_the_stamp_once_and_queries_nothing_while_budgets_are_unchanged(
    user, monkeypatch, django_assert_num_queries
):
    import costs.budgets

    hard_budget(user.pk + 1)  # someone else's: this caller has none
    caller = Caller(user_id=user.pk)
    hub.before_llm_call(estimate(caller))  # loads the index
    reads: list[str] = []
    real_get = costs.budgets.cache.get

    def counting_get(key, *args, **kwargs):
        reads.append(key)
        return real_get(key, *args, **kwargs)

    monkeypatch.setattr(costs.budgets.cache, "get", counting_get)
    with django_assert_num_queries(0):
        for _ in range(10):
            hub.before_llm_call(estimate(caller))
    assert reads == [VERSION_KEY] * 10


@pytest.mark.django_db
def test_while_the_cache_is_down_the_index_polls_the_database(user):
    caller = Caller(user_id=user.pk)
    hub.before_llm_call(estimate(caller))
    cache_failed(OSError("connection refused"), what="test")  # the cache is down: no stamp can be read or bumped
    Budget.objects.create(name="spent", scope="user", scope_id=user.pk, period="total", limit=0, enforcement="hard")
    budget_index._loaded_at -= BUDGET_INDEX_OUTAGE_POLL + 0.5  # the short poll is due
    with pytest.raises(PlatformError) as refused:
        hub.before_llm_call(estimate(caller))
    assert refused.value.code == "BUDGET_EXCEEDED"


@pytest.mark.django_db
def test_an_index_loaded_during_an_outage_reloads_once_the_cache_answers(user):
    caller = Caller(user_id=user.pk)
    cache_failed(OSError("connection refused"), what="test")
    hub.before_llm_call(estimate(caller))  # loaded while the stamp cannot be read
    # another process changes a budget while the cache is down: its bump is lost
    Budget.objects.create(name="spent", scope="user", scope_id=user.pk, period="total", limit=0, enforcement="hard")
    reset_outages()  # the cache answers again
    with pytest.raises(PlatformError) as refused:
        hub.before_llm_call(estimate(caller))
    assert refused.value.code == "BUDGET_EXCEEDED"


@pytest.mark.django_db
def test_budgets_deleted_in_bulk_from_the_admin_stop_applying_in_other_processes(
    user, admin_client, django_capture_on_commit_callbacks
):
    budget = hard_budget(user.pk)
    other = BudgetIndex()
    other.refresh()
    assert other.matching(Caller(user_id=user.pk), hard_only=True)
    with django_capture_on_commit_callbacks(execute=True):  # the stamp moves once the deletion is committed
        response = admin_client.post(
            "/admin/costs/budget/", {"action": "delete_selected", "_selected_action": [budget.pk], "post": "yes"}
        )
    assert response.status_code == 302 and not Budget.objects.exists()
    other.refresh()
    assert other.matching(Caller(user_id=user.pk)) == []
