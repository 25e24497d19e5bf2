"""A hard budget of the costs app refuses an experiment's calls: the experiment stops cleanly (stopped_budget),
nothing is marked failed, and every unrun item stays pending for a later run once the budget allows it."""

from decimal import Decimal

import pytest

from experiments import services
from experiments.models import ExperimentResult, ExperimentStatus, ResultStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.in_process("its first call must meet a budget made just before: a worker sees it a second later")
def test_a_real_hard_budget_stops_the_experiment_cleanly(user):
    costs_models = pytest.importorskip("costs.models")
    from costs.budgets import bump_budget_version

    budget = costs_models.Budget.objects.create(
        name="owner cap",
        scope="user",
        scope_id=user.id,
        period="total",
        limit=Decimal("0"),
        enforcement="hard",
    )
    bump_budget_version()
    dataset = services.dataset_create(
        name="budget", owner=user, items=[{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(5)]
    )
    experiment = services.experiment_create(
        name="capped", dataset=dataset, variants=[{"name": "A", "endpoint": "mock/budget"}], owner=user
    )
    services.experiment_start(experiment=experiment)  # eager; the owner's budget applies to the runner's calls
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.STOPPED_BUDGET
    assert experiment.error_code == "BUDGET_EXCEEDED" and "owner cap" in experiment.error_message
    statuses = set(ExperimentResult.objects.filter(experiment=experiment).values_list("status", flat=True))
    assert statuses == {ResultStatus.PENDING}

    costs_models.Budget.objects.filter(pk=budget.pk).update(is_active=False)
    bump_budget_version()
    services.experiment_start(experiment=experiment)  # the budget no longer refuses: the run completes
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert ExperimentResult.objects.filter(experiment=experiment, status=ResultStatus.COMPLETED).count() == 5
