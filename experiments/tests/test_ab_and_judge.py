"""Live A/B assignment (the prompt store's split: sticky per key, weights within tolerance over 10,000 assignments),
a split label used as an experiment variant, and the LLM-as-judge evaluator with a rubric from the prompt store."""

import collections
import math

import pytest

from agent_platform.llm.mock import mock_provider_for
from agent_platform.observability.context import bind_caller
from experiments import services
from experiments.models import ExperimentResult
from experiments.report import build_report

pytestmark = pytest.mark.django_db

N = 10_000


@pytest.fixture
def split_prompt():
    from prompts.services import label_move, prompt_create, prompt_update

    prompt_create(name="greet", text="v1: hello {{ name }}")
    prompt_update(name="greet", text="v2: hi {{ name }}")
    label_move(name="greet", label="live", version=1, split={"1": 70, "2": 30})
    return "greet"


def within(share, expected, n=N, sigmas=4):
    return abs(share - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n)


def test_assignment_is_sticky_and_weighted_over_10000_keys():
    from prompts.selectors import assign_variant

    split = {"1": 70, "2": 30}
    first = [assign_variant(split=split, key=f"conversation-{i}", salt="greet:live") for i in range(N)]
    again = [assign_variant(split=split, key=f"conversation-{i}", salt="greet:live") for i in range(N)]
    assert first == again  # sticky: same key, same version
    share = collections.Counter(first)[1] / N
    assert within(share, 0.7), share  # 0.7 ± 4σ (σ = 0.0046)

    three = collections.Counter(
        assign_variant(split={"1": 50, "2": 25, "3": 25}, key=f"user-{i}", salt="p:l") for i in range(N)
    )
    assert within(three[1] / N, 0.5) and within(three[2] / N, 0.25) and within(three[3] / N, 0.25), three
    # another label (salt) reshuffles who gets what, independently
    other = [assign_variant(split=split, key=f"conversation-{i}", salt="greet:other") for i in range(N)]
    assert first != other


def test_served_versions_follow_the_split_and_stick_per_conversation(split_prompt):
    from prompts.selectors import render_prompt

    served = {}
    for i in range(2000):
        with bind_caller(conversation_id=f"c{i}"):
            rendered = render_prompt(split_prompt, {"name": "Ada"}, label="live")
            again = render_prompt(split_prompt, {"name": "Ada"}, label="live")
        assert (rendered.version, rendered.ab_variant) == (again.version, again.ab_variant)
        assert rendered.ab_variant == f"v{rendered.version}"
        assert rendered.text.startswith(f"v{rendered.version}:")
        served[i] = rendered.version
    share = sum(1 for v in served.values() if v == 1) / len(served)
    assert within(share, 0.7, n=2000), share


@pytest.mark.runs
def test_a_split_label_as_a_variant_is_deterministic_per_item_and_records_the_version(
    user, split_prompt, django_capture_on_commit_callbacks, until_finished
):
    dataset = services.dataset_create(name="ab", owner=user, items=[{"input": {"name": f"n{i}"}} for i in range(40)])
    experiment = services.experiment_create(
        name="split",
        dataset=dataset,
        variants=[{"name": "live", "prompt_name": split_prompt, "prompt_label": "live", "endpoint": "mock/ab"}],
        owner=user,
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.experiment_start(experiment=experiment)
    until_finished(experiment.id)
    versions = dict(ExperimentResult.objects.filter(experiment=experiment).values_list("item_id", "prompt_version"))
    assert set(versions.values()) == {1, 2}
    outputs = {c.messages[-1]["content"][:2] for c in mock_provider_for("mock/ab").calls}
    assert outputs == {"v1", "v2"}
    from prompts.selectors import assign_variant

    assert all(
        assign_variant(split={"1": 70, "2": 30}, key=f"item:{item_id}", salt="greet:live") == version
        for item_id, version in versions.items()
    )


@pytest.mark.in_process("reads the LLM call records of this process's sink (llm_records)")
def test_llm_judge_scores_with_a_rubric_from_the_prompt_store(user, llm_records, django_capture_on_commit_callbacks):
    from prompts.services import prompt_create

    prompt_create(
        name="rubric",
        template_type="chat",
        messages=[
            {"role": "system", "content": 'Grade 1-5. Reply as JSON {"score": n, "reason": "..."}.'},
            {"role": "user", "content": "Q: {{ q }}\nExpected: {{ expected }}\nAnswer: {{ output }}"},
        ],
    )
    judge = mock_provider_for("mock/judge")
    judge.queue_responses(['{"score": 5, "reason": "exact"}', '{"score": 2, "reason": "vague"}', "no score at all"])
    mock_provider_for("mock/answers").queue_responses(["Paris", "somewhere in Europe", "Rome"])
    dataset = services.dataset_create(
        name="judge",
        owner=user,
        items=[
            {
                "input": {"q": "Capital of France?"},
                "messages": [{"role": "user", "content": "Capital of France?"}],
                "expected": "Paris",
            },
            {
                "input": {"q": "Capital of Spain?"},
                "messages": [{"role": "user", "content": "Capital of Spain?"}],
                "expected": "Madrid",
            },
            {
                "input": {"q": "Capital of Italy?"},
                "messages": [{"role": "user", "content": "Capital of Italy?"}],
                "expected": "Rome",
            },
        ],
    )
    experiment = services.experiment_create(
        name="judged",
        dataset=dataset,
        concurrency=1,
        variants=[{"name": "A", "endpoint": "mock/answers"}],
        evaluators=[{"type": "llm_judge", "name": "quality", "prompt": "rubric", "endpoint": "mock/judge"}],
        owner=user,
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.experiment_start(experiment=experiment)
    rows = list(ExperimentResult.objects.filter(experiment=experiment).order_by("item__position"))
    scores = [r.scores["quality"] for r in rows]
    assert scores[0] == {"score": 1.0, "passed": True, "reason": "judge: 5/5. exact"}
    assert scores[1]["score"] == 0.25 and scores[1]["passed"] is False
    assert scores[2]["error_code"] == "EVALUATOR_FAILED" and "no score" in scores[2]["reason"]
    # the rubric was rendered with the item, the output and the expected answer
    first_judge_call = judge.calls[0]
    assert first_judge_call.messages[-1]["content"] == "Q: Capital of France?\nExpected: Paris\nAnswer: Paris"
    # the judge's calls are ordinary LLM calls, attributed to the experiment, the result row and the rubric prompt
    judge_records = [r for r in llm_records.records if r.endpoint == "mock/judge"]
    assert len(judge_records) == 3
    assert {r.caller.experiment_id for r in judge_records} == {experiment.id}
    assert {r.caller.experiment_item_id for r in judge_records} == {r.id for r in rows}
    assert {(r.caller.prompt_name, r.caller.prompt_version) for r in judge_records} == {("rubric", 1)}
    # with a judge, the answer and the judge's call share one trace per item
    answer_records = {r.caller.experiment_item_id: r for r in llm_records.records if r.endpoint == "mock/answers"}
    for record in judge_records:
        assert record.trace_id == answer_records[record.caller.experiment_item_id].trace_id
    assert len({r.trace_id for r in judge_records}) == 3
    summary = build_report(experiment=experiment)["variants"][0]["scores"]["quality"]
    assert summary["mean"] == pytest.approx(0.625) and summary["n"] == 2 and summary["evaluator_failures"] == 1
