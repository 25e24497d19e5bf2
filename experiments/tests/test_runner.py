"""Running experiments on the mock provider: report numbers checked by hand, evaluator and call failures recorded per
item, caller attribution, the concurrency bound, 409 on a double start, resume without re-running finished items,
budget stop, cancel. In-process, except the `runs` tests on the full stack (on the worker); the others read this
process's observers (Recorder) or register an evaluator here."""

import pytest
from asgiref.sync import sync_to_async

from agent_platform.api.errors import PlatformError
from agent_platform.llm.mock import mock_provider_for
from agent_platform.observability.hooks import Observer, hub
from experiments import services
from experiments.evaluators import EvaluationResult, Evaluator, register, unregister
from experiments.models import Experiment, ExperimentResult, ExperimentStatus, ResultStatus
from experiments.report import build_report

pytestmark = pytest.mark.django_db

N = 24


@pytest.fixture
def prompt():
    from prompts.services import prompt_create

    return prompt_create(name="qa-exp", text="Answer briefly: {{ q }}")


@pytest.fixture
def dataset(user):
    items = [{"input": {"q": f"question {i}"}, "expected": f"answer {i}"} for i in range(1, N + 1)]
    return services.dataset_create(name="qa", owner=user, items=items)


class Recorder(Observer):
    name = "test-recorder"

    def __init__(self, refuse_after=None, on_call=None):
        self.estimates = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.refuse_after = refuse_after
        self.on_call = on_call

    async def abefore_llm_call(self, estimate):
        if self.refuse_after is not None and len(self.estimates) >= self.refuse_after:
            raise PlatformError("budget 'team' exhausted", code="BUDGET_EXCEEDED")
        self.estimates.append(estimate)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.on_call is not None:
            await self.on_call(len(self.estimates))

    def on_llm_call(self, record):
        self.in_flight -= 1
        return None


@pytest.fixture
def recorder():
    observers = []

    def make(**kwargs):
        obs = Recorder(**kwargs)
        hub.register(obs)
        observers.append(obs)
        return obs

    yield make
    for obs in observers:
        hub.unregister(obs)


@pytest.fixture
def start(django_capture_on_commit_callbacks, until_finished):
    """Start the experiment and return once it has finished (in-process at once; on the worker, waited for)."""

    def run(experiment):
        with django_capture_on_commit_callbacks(execute=True):
            started = services.experiment_start(experiment=experiment)
        until_finished(started.pk)
        return started

    return run


def script(model, correct):
    mock = mock_provider_for(model)
    for i in range(1, N + 1):
        mock.queue_response(content=f"answer {i}" if i in correct else f"wrong {i}")
    return mock


def make_experiment(user, dataset, variants, evaluators=None, concurrency=1):
    return services.experiment_create(
        name="exp",
        dataset=dataset,
        variants=variants,
        evaluators=evaluators if evaluators is not None else [{"type": "exact_match", "name": "accuracy"}],
        concurrency=concurrency,
        owner=user,
    )


@pytest.mark.in_process("reads the calls this process's observer (Recorder) saw")
def test_two_variants_report_numbers_checked_by_hand(start, user, dataset, prompt, recorder):
    obs = recorder()
    script("mock/exp-a", correct=set(range(1, 13)))  # 12 of 24 right
    script("mock/exp-b", correct=set(range(1, N + 1)))  # all right
    script("mock/exp-c", correct=set(range(1, 11)) | {13, 14})  # 12 right, 2 swapped vs A
    experiment = make_experiment(
        user,
        dataset,
        [
            {"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"},
            {"name": "B", "prompt_name": "qa-exp", "prompt_version": 1, "endpoint": "mock/exp-b"},
            {"name": "C", "prompt_name": "qa-exp", "endpoint": "mock/exp-c"},
        ],
    )
    start(experiment)  # eager: runs to the end here
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert ExperimentResult.objects.filter(experiment=experiment, status=ResultStatus.COMPLETED).count() == 3 * N

    # the prompt was rendered with each item's variables and every call attributed to its result row
    call = mock_provider_for("mock/exp-a").calls[0]
    assert call.messages[-1]["content"] == "Answer briefly: question 1"
    result_ids = set(ExperimentResult.objects.filter(experiment=experiment).values_list("id", flat=True))
    assert {e.caller.experiment_item_id for e in obs.estimates} == result_ids
    assert {e.caller.experiment_id for e in obs.estimates} == {experiment.id}
    assert {(e.caller.prompt_name, e.caller.prompt_version) for e in obs.estimates} == {("qa-exp", 1)}

    report = build_report(experiment=experiment)
    by_name = {v["name"]: v for v in report["variants"]}
    a, b, c = (by_name[n]["scores"]["accuracy"] for n in "ABC")
    assert (a["mean"], a["pass_rate"], a["n"], a["passed"]) == (0.5, 0.5, N, 12)
    assert a["ci_low"] < 0.5 < a["ci_high"]
    assert a["ci_low"] > 0.25 and a["ci_high"] < 0.75  # ±0.2 is what 24 coin flips allow
    assert (b["mean"], b["ci_low"], b["ci_high"]) == (1.0, 1.0, 1.0)
    assert c["mean"] == 0.5
    for v in by_name.values():
        assert v["latency_ms"]["p50"] is not None and v["latency_ms"]["p50"] <= v["latency_ms"]["p95"]
        assert v["tokens"]["total"] > 0 and v["completed"] == N and v["failed"] == 0

    comparisons = {c["variant"]: c for c in report["comparisons"]}
    assert report["experiment"]["baseline"] == "A"
    ab = comparisons["B"]["metrics"]["accuracy"]
    # 12 discordant pairs, all for B: exact McNemar p = 2 * 0.5**12
    assert ab["mcnemar"]["b_only"] == 12 and ab["mcnemar"]["a_only"] == 0
    assert ab["mcnemar"]["p_value"] == pytest.approx(2 * 0.5**12, abs=1e-6)
    assert ab["mean_diff"] == 0.5 and ab["ci_low"] > 0
    assert ab["verdict"] == "B is better on accuracy, p < 0.001"
    assert comparisons["B"]["verdict"].startswith("B is better on accuracy, p < 0.001; ")
    ac = comparisons["C"]["metrics"]["accuracy"]
    # 2 discordant each way: no evidence at all
    assert (ac["mcnemar"]["a_only"], ac["mcnemar"]["b_only"]) == (2, 2)
    assert ac["mcnemar"]["p_value"] == 1.0
    assert ac["verdict"] == "no detectable difference on accuracy (p = 1.00)"

    first = report["items"][0]
    assert first["expected"] == "answer 1"
    assert {name: o["output"] for name, o in first["outputs"].items()} == {
        "A": "answer 1",
        "B": "answer 1",
        "C": "answer 1",
    }
    assert report["items"][12]["outputs"]["A"]["scores"]["accuracy"]["passed"] is False


@pytest.mark.in_process("registers an evaluator in this process")
def test_a_failing_evaluator_and_a_failing_call_are_recorded_on_their_items(start, user, dataset, prompt):
    @register
    class Fragile(Evaluator):
        type_name = "test_fragile"

        def evaluate(self, data):
            if data.output.endswith(" 3"):
                raise RuntimeError("cannot score item 3")
            return EvaluationResult(score=1.0, passed=True, reason="ok")

    try:
        mock = mock_provider_for("mock/exp-a")
        for i in range(1, N + 1):
            if i == 5:
                mock.queue_failure("bad_request")  # item 5's call fails (not retryable)
            else:
                mock.queue_response(content=f"answer {i}")
        experiment = make_experiment(
            user,
            dataset,
            [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"}],
            evaluators=[{"type": "test_fragile"}, {"type": "exact_match", "name": "accuracy"}],
        )
        start(experiment)
    finally:
        unregister("test_fragile")
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED  # the experiment went on
    rows = {r.item.position: r for r in ExperimentResult.objects.filter(experiment=experiment).select_related("item")}
    failed = [r for r in rows.values() if r.status == ResultStatus.FAILED]
    assert len(failed) == 1 and failed[0].error_code and failed[0].output == ""
    assert failed[0].item.position == 5
    fragile_failures = [r for r in rows.values() if (r.scores.get("test_fragile") or {}).get("error_code")]
    assert len(fragile_failures) == 1
    entry = fragile_failures[0].scores["test_fragile"]
    assert entry["error_code"] == "EVALUATOR_FAILED" and "cannot score item 3" in entry["reason"]
    report = build_report(experiment=experiment)
    summary = report["variants"][0]
    assert summary["failed"] == 1 and summary["errors"] == {failed[0].error_code: 1}
    # the failed call counts as a miss for every evaluator; the evaluator failure is left out of its evaluator only
    assert summary["scores"]["test_fragile"]["n"] == N - 1
    assert summary["scores"]["test_fragile"]["evaluator_failures"] == 1
    assert summary["scores"]["accuracy"]["n"] == N


@pytest.mark.in_process("reads the calls this process's observer (Recorder) saw")
def test_concurrency_limit_is_respected_and_used(start, user, dataset, prompt, recorder):
    obs = recorder()
    mock_provider_for("mock/exp-slow").latency = 0.02
    experiment = make_experiment(
        user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-slow"}], concurrency=4
    )
    start(experiment)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert len(obs.estimates) == N
    assert 2 <= obs.max_in_flight <= 4


@pytest.mark.runs
def test_starting_a_running_experiment_is_409_and_a_stale_one_resumes_without_rerunning_finished_items(
    start, user, dataset, prompt, settings
):
    experiment = make_experiment(user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"}])
    start(experiment)
    mock = mock_provider_for("mock/exp-a")
    assert len(mock.calls) == N
    # simulate a worker that died mid-run: some rows back to running/pending, the experiment still "running"
    rows = list(ExperimentResult.objects.filter(experiment=experiment).order_by("item__position"))
    ExperimentResult.objects.filter(id__in=[r.id for r in rows[:3]]).update(status=ResultStatus.RUNNING, output="")
    ExperimentResult.objects.filter(id__in=[r.id for r in rows[3:5]]).update(status=ResultStatus.PENDING, output="")
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.RUNNING, run_token="dead")
    from django.utils import timezone

    Experiment.objects.filter(pk=experiment.pk).update(heartbeat_at=timezone.now())
    with pytest.raises(PlatformError) as info:
        start(experiment)
    assert info.value.code == "EXPERIMENT_ALREADY_RUNNING" and info.value.status == 409

    settings.EXPERIMENTS_HEARTBEAT_TIMEOUT = 0  # the heartbeat is now stale: the runner is considered dead
    mock.clear_history()
    start(experiment)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert len(mock.calls) == 5  # only the 5 unfinished rows ran again
    assert ExperimentResult.objects.filter(experiment=experiment, status=ResultStatus.COMPLETED).count() == N


@pytest.mark.in_process("its budget is an observer (Recorder) of this process")
def test_budget_refusal_stops_cleanly_keeping_what_was_done(start, user, dataset, prompt, recorder):
    recorder(refuse_after=5)
    experiment = make_experiment(user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"}])
    start(experiment)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.STOPPED_BUDGET
    assert experiment.error_code == "BUDGET_EXCEEDED"
    counts = {s: ExperimentResult.objects.filter(experiment=experiment, status=s).count() for s in ResultStatus.values}
    assert counts[ResultStatus.COMPLETED] == 5
    assert counts[ResultStatus.RUNNING] == 0 and counts[ResultStatus.FAILED] == 0
    assert counts[ResultStatus.PENDING] == N - 5  # left for a later run, not marked failed


@pytest.mark.in_process("cancels from an observer (Recorder) of this process")
def test_cancel_stops_new_items_and_keeps_finished_ones(start, user, dataset, prompt, recorder):
    holder = {}

    async def cancel_on_third(n):
        if n == 3:
            await sync_to_async(services.experiment_cancel)(experiment=holder["experiment"])

    recorder(on_call=cancel_on_third)
    mock_provider_for("mock/exp-a").latency = 0.06
    experiment = make_experiment(user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"}])
    holder["experiment"] = experiment
    start(experiment)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.CANCELLED
    completed = ExperimentResult.objects.filter(experiment=experiment, status=ResultStatus.COMPLETED).count()
    assert 3 <= completed < N
    assert not ExperimentResult.objects.filter(experiment=experiment, status=ResultStatus.RUNNING).exists()
    with pytest.raises(PlatformError) as info:
        services.experiment_cancel(experiment=experiment)
    assert info.value.code == "CONFLICT"


@pytest.mark.in_process("reads the calls this process's observer (Recorder) saw")
def test_per_endpoint_limit_caps_in_flight_calls_below_the_experiment_limit(
    start, user, dataset, prompt, recorder, settings
):
    obs = recorder()
    settings.EXPERIMENTS_ENDPOINT_CONCURRENCY = 2
    mock_provider_for("mock/exp-narrow").latency = 0.02
    experiment = make_experiment(
        user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-narrow"}], concurrency=8
    )
    start(experiment)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert obs.max_in_flight == 2


@pytest.mark.runs
def test_prompt_render_errors_are_recorded_per_item(start, user, prompt):
    ds = services.dataset_create(
        name="bad-vars", owner=user, items=[{"input": {"q": "fine"}}, {"input": {"other": "x"}}]
    )
    experiment = make_experiment(user, ds, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"}])
    start(experiment)
    rows = list(ExperimentResult.objects.filter(experiment=experiment).order_by("item__position"))
    assert [r.status for r in rows] == [ResultStatus.COMPLETED, ResultStatus.FAILED]
    assert rows[1].error_code == "PROMPT_VARIABLE_MISSING" and "q" in rows[1].error_message
    assert len(mock_provider_for("mock/exp-a").calls) == 1  # the bad item never reached the model


def test_dataset_import_size_limit(user, settings):
    settings.EXPERIMENTS_IMPORT_MAX_BYTES = 10
    ds = services.dataset_create(name="small", owner=user)
    with pytest.raises(PlatformError) as info:
        services.dataset_import(dataset=ds, fmt="jsonl", content='{"q": "a long enough line"}\n')
    assert info.value.code == "DATASET_INVALID" and info.value.details["field"] == "file"


@pytest.mark.runs
def test_the_periodic_sweep_resumes_only_experiments_whose_runner_died(
    user, dataset, prompt, settings, django_capture_on_commit_callbacks, until_finished
):
    from datetime import timedelta

    from django.utils import timezone

    from experiments.tasks import resume_stale

    dead = make_experiment(user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"}])
    alive = make_experiment(user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-b"}])
    for experiment, token, beat in ((dead, "x", timezone.now() - timedelta(minutes=10)), (alive, "y", timezone.now())):
        ExperimentResult.objects.bulk_create(
            ExperimentResult(experiment=experiment, variant=experiment.variants.get(), item=item)
            for item in dataset.items.all()
        )
        Experiment.objects.filter(pk=experiment.pk).update(
            status=ExperimentStatus.RUNNING, run_token=token, heartbeat_at=beat
        )
    settings.EXPERIMENTS_HEARTBEAT_TIMEOUT = 60
    with django_capture_on_commit_callbacks(execute=True):
        assert resume_stale() == [dead.pk]
    dead = until_finished(dead.pk)
    alive.refresh_from_db()
    assert dead.status == ExperimentStatus.COMPLETED
    assert (alive.status, alive.run_token) == (ExperimentStatus.RUNNING, "y")
    assert len(mock_provider_for("mock/exp-b").calls) == 0


def test_a_runner_presumed_dead_stops_when_it_notices_a_newer_start(user, dataset, prompt):
    from experiments.services import experiment_heartbeat

    experiment = make_experiment(user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"}])
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.RUNNING, run_token="new")
    assert experiment_heartbeat(experiment_id=experiment.pk, run_token="new") == ExperimentStatus.RUNNING
    assert experiment_heartbeat(experiment_id=experiment.pk, run_token="old") == "superseded"
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.CANCELLED)
    assert experiment_heartbeat(experiment_id=experiment.pk, run_token="new") == ExperimentStatus.CANCELLED


@pytest.mark.runs
def test_report_while_running_skips_resampling_and_a_finished_report_is_cached(
    start, user, dataset, prompt, django_assert_max_num_queries
):
    experiment = make_experiment(
        user,
        dataset,
        [
            {"name": "A", "prompt_name": "qa-exp", "endpoint": "mock/exp-a"},
            {"name": "B", "prompt_name": "qa-exp", "endpoint": "mock/exp-b"},
        ],
    )
    start(experiment)
    experiment.refresh_from_db()
    first = build_report(experiment=experiment)
    assert first["statistics"] is True and first["variants"][0]["scores"]["accuracy"]["ci_low"] is not None
    with django_assert_max_num_queries(2):  # the cache key's two aggregates; nothing recomputed
        assert build_report(experiment=experiment) == first
    ExperimentResult.objects.filter(experiment=experiment).update(status=ResultStatus.PENDING)
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.RUNNING)
    experiment.refresh_from_db()
    running = build_report(experiment=experiment)
    assert running["statistics"] is False
    assert running["comparisons"][0]["verdict"] == "statistics when the experiment finishes"


@pytest.mark.in_process("patches the litellm loader of this process")
def test_a_run_loads_litellm_before_its_first_call_and_off_the_event_loop(
    start, user, dataset, prompt, fake_openai, monkeypatch
):
    """litellm is imported on first use, which takes seconds (more than a call's whole timeout on a busy machine:
    a fresh worker's first calls then failed with LLM_API_TIMEOUT). A run loads it before any call starts, outside
    the event loop; a run on mock endpoints only never loads it."""
    import asyncio

    from agent_platform.llm import providers
    from agent_platform.llm.client import provider_libraries_load
    from tests.support.fixtures import create_endpoint_for_fake_server

    real, loads = providers.litellm_module, []

    def recording_load():
        try:
            asyncio.get_running_loop()
            loads.append("on the event loop")
        except RuntimeError:
            loads.append("before the loop")
        return real()

    monkeypatch.setattr(providers, "litellm_module", recording_load)
    assert provider_libraries_load(endpoints={"mock/exp-a", "mock/exp-b"}) is False and loads == []

    endpoint = create_endpoint_for_fake_server(fake_openai, name="exp-litellm", max_retries=0)
    experiment = make_experiment(
        user, dataset, [{"name": "A", "prompt_name": "qa-exp", "endpoint": endpoint.name}], evaluators=[], concurrency=2
    )
    start(experiment)
    experiment.refresh_from_db()
    assert experiment.status == ExperimentStatus.COMPLETED
    assert ExperimentResult.objects.filter(experiment=experiment, status=ResultStatus.COMPLETED).count() == N
    assert len(fake_openai.requests) == N
    assert loads[0] == "before the loop", loads[:3]
