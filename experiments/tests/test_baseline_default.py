"""An experiment made without naming a baseline (in the admin, with variants added inline) compares against its
first variant; one with a baseline keeps it."""

import pytest

from experiments import services
from experiments.models import Dataset, Experiment, Variant

pytestmark = pytest.mark.django_db


def experiment_with_variants(*names: str) -> Experiment:
    experiment = Experiment.objects.create(name="inline", dataset=Dataset.objects.create(name="d"))
    for position, name in enumerate(names):
        Variant.objects.create(experiment=experiment, name=name, position=position, endpoint="mock/x")
    return experiment


def test_without_a_baseline_the_first_variant_becomes_it():
    experiment = experiment_with_variants("control", "candidate")
    services.experiment_baseline_default(experiment=experiment)
    assert Experiment.objects.get(pk=experiment.pk).baseline.name == "control"


def test_a_chosen_baseline_is_kept_and_no_variants_means_none():
    experiment = experiment_with_variants("control", "candidate")
    experiment.baseline = experiment.variants.get(name="candidate")
    experiment.save()
    services.experiment_baseline_default(experiment=experiment)
    assert Experiment.objects.get(pk=experiment.pk).baseline.name == "candidate"
    empty = experiment_with_variants()
    services.experiment_baseline_default(experiment=empty)
    assert Experiment.objects.get(pk=empty.pk).baseline is None
