"""Evaluators: each built-in on its edge cases, config errors naming the option, the registry, failure capture."""

from decimal import Decimal

import pytest

from agent_platform.api.errors import PlatformError
from experiments import evaluators as ev
from experiments.evaluators import EvaluationInput, EvaluationResult


def run(type_name, output, expected=None, **options):
    (configured,) = ev.build_evaluators([{"type": type_name, **options}])
    return ev.run_evaluator(configured, EvaluationInput(output=output, expected=expected))


def test_exact_match_trims_and_respects_case_option():
    assert run("exact_match", "  Paris\n", "Paris")["passed"] is True
    assert run("exact_match", "paris", "Paris")["passed"] is False
    assert run("exact_match", "paris", "Paris", case_sensitive=False) == {
        "score": 1.0,
        "passed": True,
        "reason": "output equals the expected output",
    }
    assert run("exact_match", " Paris", "Paris", strip=False)["passed"] is False


def test_exact_match_without_expected_output_is_an_evaluator_failure_not_a_zero():
    result = run("exact_match", "Paris", None)
    assert result["error_code"] == "EVALUATOR_FAILED"
    assert result["score"] is None and result["passed"] is False
    assert "no expected output" in result["reason"]


def test_contains_default_expected_any_and_all():
    assert run("contains", "The capital is PARIS.", "paris")["passed"] is True
    assert run("contains", "The capital is PARIS.", "paris", case_sensitive=True)["passed"] is False
    assert run("contains", "red and blue", values=["red", "green"])["passed"] is True
    partial = run("contains", "red and blue", values=["red", "green"], mode="all")
    assert partial["passed"] is False and partial["score"] == 0.5 and "'green'" in partial["reason"]
    assert run("contains", "x", expected=["a", "x"])["passed"] is True  # expected list: any of them


def test_regex_search_fullmatch_negate_and_bad_pattern():
    assert run("regex", "order #1234 shipped", pattern=r"#\d{4}")["passed"] is True
    assert run("regex", "order #1234 shipped", pattern=r"#\d{4}", fullmatch=True)["passed"] is False
    assert run("regex", "I cannot help", pattern="cannot", negate=True)["passed"] is False
    assert run("regex", "ABC", pattern="abc", ignore_case=True)["passed"] is True
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "exact_match"}, {"type": "regex", "pattern": "(unclosed"}])
    assert info.value.code == "VALIDATION_ERROR"
    assert info.value.details["field"] == "evaluators[1].pattern"


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a*)*", r"(\w+\s?)*$", "(x+){2,5}"])
def test_regex_refuses_nested_repetition_that_can_backtrack_exponentially(pattern):
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "regex", "pattern": pattern}])
    assert info.value.details["field"] == "evaluators[0].pattern" and "exponential" in info.value.message


def test_json_valid_accepts_code_fences_unless_told_not_to():
    assert run("json_valid", '{"a": 1}')["passed"] is True
    assert run("json_valid", '```json\n{"a": 1}\n```')["passed"] is True
    assert run("json_valid", '```json\n{"a": 1}\n```', allow_code_fence=False)["passed"] is False
    bad = run("json_valid", "{'a': 1}")
    assert bad["passed"] is False and bad["reason"].startswith("not valid JSON")
    assert run("json_valid", "")["passed"] is False


def test_json_schema_reports_the_failing_path():
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
    }
    assert run("json_schema", '{"name": "Ada", "age": 36}', schema=schema)["passed"] is True
    bad = run("json_schema", '{"name": "Ada", "age": -1}', schema=schema)
    assert bad["passed"] is False and bad["reason"].startswith("at age:")
    missing = run("json_schema", '{"name": "Ada"}', schema=schema)
    assert missing["passed"] is False and "'age' is a required property" in missing["reason"]
    assert run("json_schema", "not json", schema=schema)["reason"].startswith("not valid JSON")
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "json_schema", "schema": {"type": "no-such-type"}}])
    assert info.value.details["field"] == "evaluators[0].schema"


def test_numeric_closeness_parses_numbers_from_text():
    assert run("numeric", "The answer is 42.", "42")["passed"] is True
    assert run("numeric", "about 3.14159", 3.14, abs_tol=0.01)["passed"] is True
    assert run("numeric", "about 3.2", 3.14, abs_tol=0.01)["passed"] is False
    assert run("numeric", "1,000,000 people", 1_000_000)["passed"] is True
    assert run("numeric", "-7", -7)["passed"] is True
    assert run("numeric", "105", 100, rel_tol=0.1)["passed"] is True
    assert run("numeric", "no digits here", 1)["reason"] == "no number in the output"
    assert run("numeric", "5", "five")["error_code"] == "EVALUATOR_FAILED"


def test_length_bounds_in_chars_and_words():
    assert run("length", "hello", max=5)["passed"] is True
    assert run("length", "hello!", max=5)["reason"] == "6 chars is more than the maximum 5"
    assert run("length", "one two three", min=4, unit="words")["passed"] is False
    assert run("length", "", min=1)["passed"] is False
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "length", "min": 10, "max": 2}])
    assert info.value.details["field"] == "evaluators[0].min"
    with pytest.raises(PlatformError):
        ev.build_evaluators([{"type": "length"}])


def test_latency_and_cost_thresholds_and_unknown_values():
    (latency,) = ev.build_evaluators([{"type": "latency", "max_ms": 500}])
    assert ev.run_evaluator(latency, EvaluationInput(output="", latency_ms=499.6))["passed"] is True
    assert ev.run_evaluator(latency, EvaluationInput(output="", latency_ms=501))["passed"] is False
    assert ev.run_evaluator(latency, EvaluationInput(output=""))["error_code"] == "EVALUATOR_FAILED"
    (cost,) = ev.build_evaluators([{"type": "cost", "max_usd": "0.01"}])
    assert ev.run_evaluator(cost, EvaluationInput(output="", cost=Decimal("0.01")))["passed"] is True
    over = ev.run_evaluator(cost, EvaluationInput(output="", cost=Decimal("0.0100001")))
    assert over["passed"] is False and over["reason"] == "$0.0100001 > $0.01"
    assert "unknown" in ev.run_evaluator(cost, EvaluationInput(output=""))["reason"]
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "cost", "max_usd": -1}])
    assert info.value.details["field"] == "evaluators[0].max_usd"


def test_config_errors_name_the_entry_and_option():
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "no_such"}])
    assert info.value.code == "EVALUATOR_NOT_FOUND" and info.value.details["field"] == "evaluators[0].type"
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "exact_match", "bogus": 1}])
    assert info.value.details["field"] == "evaluators[0].bogus"
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "exact_match"}, {"type": "exact_match"}])
    assert info.value.details["field"] == "evaluators[1].name"
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators([{"type": "regex"}])
    assert info.value.details["field"] == "evaluators[0].pattern"
    with pytest.raises(PlatformError):
        ev.build_evaluators({"type": "exact_match"})
    named = ev.build_evaluators([{"type": "exact_match", "name": "accuracy"}, {"type": "exact_match"}])
    assert [c.key for c in named] == ["accuracy", "exact_match"]


def test_a_site_registers_its_own_evaluator_and_a_raising_one_is_recorded_not_raised():
    @ev.register
    class Politeness(ev.Evaluator):
        type_name = "test_politeness"
        options = {"word": "please"}

        def evaluate(self, data):
            ok = self.config["word"] in data.output.lower()
            return EvaluationResult(score=float(ok), passed=ok, reason="polite" if ok else "rude")

    @ev.register
    class Broken(ev.Evaluator):
        type_name = "test_broken"

        def evaluate(self, data):
            raise ZeroDivisionError("division by zero")

    try:
        polite, broken = ev.build_evaluators([{"type": "test_politeness"}, {"type": "test_broken"}])
        assert ev.run_evaluator(polite, EvaluationInput(output="Please sit"))["passed"] is True
        failed = ev.run_evaluator(broken, EvaluationInput(output="x"))
        assert failed == {
            "score": None,
            "passed": False,
            "reason": "division by zero",
            "error_code": "EVALUATOR_FAILED",
        }
    finally:
        ev.unregister("test_politeness")
        ev.unregister("test_broken")
    with pytest.raises(ValueError):
        ev.register(type("NoName", (ev.Evaluator,), {}))


def test_llm_judge_parses_json_or_a_bare_number_and_normalises_the_scale():
    (judge,) = ev.build_evaluators([{"type": "llm_judge", "prompt": "rubric", "endpoint": "mock/judge"}])
    parse = judge.evaluator.parse
    assert parse('{"score": 5, "reason": "perfect"}') == EvaluationResult(1.0, True, "judge: 5/5. perfect")
    assert parse('```json\n{"score": 1}\n```').score == 0.0
    assert parse("I'd give it 3 out of 5").score == 0.5
    with pytest.raises(ev.EvaluatorError):
        parse("excellent answer")
    with pytest.raises(ev.EvaluatorError):
        parse('{"score": 9}')
    with pytest.raises(PlatformError) as info:
        ev.build_evaluators(
            [{"type": "llm_judge", "prompt": "rubric", "endpoint": "x", "scale_min": 5, "scale_max": 1}]
        )
    assert info.value.details["field"] == "evaluators[0].scale_max"
