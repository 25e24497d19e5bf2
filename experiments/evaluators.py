"""Evaluators: score one output of one dataset item.

Every evaluator is a class registered under a type name; an experiment's `evaluators` config is a list of
`{"type": "<registered name>", "name": "<column name, optional>", ...options}`. A site adds its own with

    from experiments.evaluators import Evaluator, EvaluationResult, register

    @register
    class PolitenessEvaluator(Evaluator):
        type_name = "politeness"
        def evaluate(self, data):
            ok = "please" in data.output.lower()
            return EvaluationResult(score=float(ok), passed=ok, reason="said please" if ok else "no please")

Scores are in [0, 1] (1 is best). An evaluator that raises is recorded on that item as `EVALUATOR_FAILED`
(`run_evaluator`); the experiment goes on.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from agent_platform.api.errors import PlatformError


@dataclass(frozen=True)
class EvaluationResult:
    score: float
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"score": float(self.score), "passed": bool(self.passed), "reason": self.reason}


@dataclass
class EvaluationInput:
    """What an evaluator sees of one execution."""

    output: str
    expected: Any = None
    input: Any = None  # the item's input variables (dict) or chat messages (list)
    latency_ms: float | None = None
    cost: Decimal | None = None
    tokens: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class EvaluatorError(Exception):
    """Raised by an evaluator that cannot score this item (missing expected output, unknown cost...)."""


class Evaluator:
    """Base class. Subclasses set `type_name`, declare `options` (name -> default; `REQUIRED` for required ones)
    and implement `evaluate` (or `aevaluate` when they make network calls)."""

    type_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    uses_llm: ClassVar[bool] = False

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - set(self.options)
        if unknown:
            name = sorted(unknown)[0]
            raise _config_error(f"unknown option {name!r} for evaluator {self.type_name!r}", name)
        self.config: dict[str, Any] = {}
        for name, default in self.options.items():
            if name in config:
                self.config[name] = config[name]
            elif default is REQUIRED:
                raise _config_error(f"evaluator {self.type_name!r} needs option {name!r}", name)
            else:
                self.config[name] = default
        self.validate_config()

    def validate_config(self) -> None:
        """Raise `PlatformError(VALIDATION_ERROR, field=option)` for a bad option."""

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        raise NotImplementedError

    async def aevaluate(self, data: EvaluationInput) -> EvaluationResult:
        return self.evaluate(data)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

REGISTRY: dict[str, type[Evaluator]] = {}


def register(cls: type[Evaluator]) -> type[Evaluator]:
    """Class decorator: make an evaluator available to experiments under `cls.type_name`."""
    if not cls.type_name or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", cls.type_name):
        raise ValueError(f"evaluator {cls.__name__} needs a snake_case type_name")
    REGISTRY[cls.type_name] = cls
    return cls


def unregister(type_name: str) -> None:
    REGISTRY.pop(type_name, None)


def _config_error(message: str, option: str | None = None, *, index: int | None = None) -> PlatformError:
    prefix = f"evaluators[{index}]" if index is not None else "evaluators"
    field_name = f"{prefix}.{option}" if option else prefix
    return PlatformError(message, code="VALIDATION_ERROR", field=field_name)


def get_evaluator_class(type_name: str) -> type[Evaluator]:
    try:
        return REGISTRY[type_name]
    except KeyError:
        raise PlatformError(
            f"No evaluator of type {type_name!r}; known: {', '.join(sorted(REGISTRY))}.",
            code="EVALUATOR_NOT_FOUND",
            field="type",
        ) from None


@dataclass
class ConfiguredEvaluator:
    key: str  # the column name in results and reports
    type_name: str
    evaluator: Evaluator


def build_evaluators(config: list[dict[str, Any]] | None) -> list[ConfiguredEvaluator]:
    """Instantiate an experiment's evaluators config; errors name the entry and option (`evaluators[1].pattern`)."""
    if config is None:
        return []
    if not isinstance(config, list):
        raise _config_error("evaluators must be a list of objects")
    built: list[ConfiguredEvaluator] = []
    seen: set[str] = set()
    for index, entry in enumerate(config):
        if not isinstance(entry, dict):
            raise _config_error("each evaluator must be an object with a 'type'", index=index)
        options = dict(entry)
        type_name = options.pop("type", None)
        if not isinstance(type_name, str) or not type_name:
            raise _config_error("missing evaluator 'type'", "type", index=index)
        key = options.pop("name", None) or type_name
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key):
            raise _config_error("name must be 1-64 letters, digits, '_', '.' or '-'", "name", index=index)
        if key in seen:
            raise _config_error(f"two evaluators are named {key!r}; give one a 'name'", "name", index=index)
        seen.add(key)
        if type_name not in REGISTRY:
            raise PlatformError(
                f"No evaluator of type {type_name!r}; known: {', '.join(sorted(REGISTRY))}.",
                code="EVALUATOR_NOT_FOUND",
                field=f"evaluators[{index}].type",
            )
        try:
            evaluator = REGISTRY[type_name](**options)
        except PlatformError as exc:
            option = str(exc.details.get("field", "")).removeprefix("evaluators.")
            raise _config_error(exc.message, option or None, index=index) from None
        built.append(ConfiguredEvaluator(key=key, type_name=type_name, evaluator=evaluator))
    return built


def _failure(exc: BaseException) -> dict[str, Any]:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, PlatformError):
        message = f"{exc.code}: {exc.message}"
    return {"score": None, "passed": False, "reason": message[:500], "error_code": "EVALUATOR_FAILED"}


def _coerce(result: Any) -> dict[str, Any]:
    if not isinstance(result, EvaluationResult):
        raise TypeError(f"evaluator returned {type(result).__name__}, not EvaluationResult")
    score = float(result.score)
    if math.isnan(score):
        raise ValueError("evaluator returned a NaN score")
    return result.as_dict()


def run_evaluator(configured: ConfiguredEvaluator, data: EvaluationInput) -> dict[str, Any]:
    """The evaluator's result as a dict; any exception becomes an `EVALUATOR_FAILED` entry (never raised)."""
    try:
        return _coerce(configured.evaluator.evaluate(data))
    except Exception as exc:
        return _failure(exc)


async def arun_evaluator(configured: ConfiguredEvaluator, data: EvaluationInput) -> dict[str, Any]:
    try:
        return _coerce(await configured.evaluator.aevaluate(data))
    except Exception as exc:
        if isinstance(exc, PlatformError) and exc.code == "BUDGET_EXCEEDED":
            raise  # a budget refusal stops the experiment, it is not an evaluator bug
        return _failure(exc)


# --- helpers ---------------------------------------------------------------------------------------------------

# A quantified group whose body also has a quantifier: the classic catastrophic-backtracking shape ((a+)+, (\w*)*).
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*]|\{\d+,\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d+,\d*\})")
MAX_REGEX_INPUT = 100_000
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n(.*?)\n?\s*```\s*$", re.DOTALL)
_NUMBER = re.compile(r"[-+]?(?:\d+(?:[.,]\d+)*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _need_expected(data: EvaluationInput) -> Any:
    if data.expected is None or data.expected == "":
        raise EvaluatorError("the item has no expected output to compare with")
    return data.expected


def _strip_fence(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _parse_json(text: str, allow_code_fence: bool) -> Any:
    source = _strip_fence(text) if allow_code_fence else text
    return json.loads(source)


def _parse_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _NUMBER.search(value)
    if not match:
        return None
    token = match.group(0)
    if "," in token and "." not in token and re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+", token) is None:
        token = token.replace(",", ".")  # decimal comma: "3,5"
    token = token.replace(",", "")
    try:
        return float(Decimal(token))
    except (InvalidOperation, ValueError):
        return None


def _bool_option(evaluator: Evaluator, name: str) -> None:
    if not isinstance(evaluator.config[name], bool):
        raise _config_error(f"{name} must be true or false", name)


def _number_option(evaluator: Evaluator, name: str, *, minimum: float = 0, allow_none: bool = False) -> None:
    value = evaluator.config[name]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise _config_error(f"{name} must be a number >= {minimum}", name)


def _verdict(passed: bool, reason: str) -> EvaluationResult:
    return EvaluationResult(score=1.0 if passed else 0.0, passed=passed, reason=reason)


# --- built-in evaluators -------------------------------------------------------------------------------------


@register
class ExactMatch(Evaluator):
    type_name = "exact_match"
    description = "The output equals the expected output (whitespace-trimmed; optionally case-insensitive)."
    options = {"case_sensitive": True, "strip": True}

    def validate_config(self) -> None:
        _bool_option(self, "case_sensitive")
        _bool_option(self, "strip")

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        expected, output = _as_text(_need_expected(data)), data.output or ""
        if self.config["strip"]:
            expected, output = expected.strip(), output.strip()
        if not self.config["case_sensitive"]:
            expected, output = expected.casefold(), output.casefold()
        if output == expected:
            return _verdict(True, "output equals the expected output")
        return _verdict(False, f"expected {_short(expected)}, got {_short(output)}")


@register
class Contains(Evaluator):
    type_name = "contains"
    description = "The output contains a value (default: the expected output); with `values`, any or all of them."
    options = {"value": None, "values": None, "mode": "any", "case_sensitive": False}

    def validate_config(self) -> None:
        _bool_option(self, "case_sensitive")
        if self.config["mode"] not in ("any", "all"):
            raise _config_error("mode must be 'any' or 'all'", "mode")
        if self.config["value"] is not None and not isinstance(self.config["value"], str):
            raise _config_error("value must be a string", "value")
        values = self.config["values"]
        if values is not None and (
            not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values)
        ):
            raise _config_error("values must be a non-empty list of strings", "values")

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        if self.config["values"] is not None:
            needles = list(self.config["values"])
        elif self.config["value"] is not None:
            needles = [self.config["value"]]
        else:
            expected = _need_expected(data)
            needles = [_as_text(v) for v in expected] if isinstance(expected, list) else [_as_text(expected)]
        haystack = data.output or ""
        if not self.config["case_sensitive"]:
            haystack = haystack.casefold()
        found = [n for n in needles if (n if self.config["case_sensitive"] else n.casefold()) in haystack]
        missing = [n for n in needles if n not in found]
        passed = bool(found) if self.config["mode"] == "any" else not missing
        score = len(found) / len(needles) if self.config["mode"] == "all" else float(passed)
        if passed:
            return EvaluationResult(score=score, passed=True, reason=f"contains {', '.join(map(_short, found))}")
        return EvaluationResult(score=score, passed=False, reason=f"missing {', '.join(map(_short, missing))}")


@register
class Regex(Evaluator):
    type_name = "regex"
    description = "The output matches a regular expression (search anywhere, or the whole output with fullmatch)."
    options = {"pattern": REQUIRED, "ignore_case": False, "fullmatch": False, "negate": False}

    def validate_config(self) -> None:
        for name in ("ignore_case", "fullmatch", "negate"):
            _bool_option(self, name)
        pattern = self.config["pattern"]
        if not isinstance(pattern, str) or not pattern or len(pattern) > 1000:
            raise _config_error("pattern must be a non-empty string of at most 1000 characters", "pattern")
        if _NESTED_QUANTIFIER.search(pattern):
            raise _config_error(
                "pattern repeats a group that itself repeats (like (a+)+), which can take exponential time; "
                "rewrite it without the nested repetition",
                "pattern",
            )
        try:
            self._compiled = re.compile(pattern, re.IGNORECASE if self.config["ignore_case"] else 0)
        except re.error as exc:
            raise _config_error(f"pattern does not compile: {exc}", "pattern") from None

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        text = (data.output or "")[:MAX_REGEX_INPUT]
        match = self._compiled.fullmatch(text) if self.config["fullmatch"] else self._compiled.search(text)
        matched = match is not None
        passed = matched != self.config["negate"]
        what = f"matches /{self.config['pattern']}/" if matched else f"does not match /{self.config['pattern']}/"
        return _verdict(passed, f"output {what}")


@register
class JSONValid(Evaluator):
    type_name = "json_valid"
    description = "The output is valid JSON (a ```json fence around it is allowed unless allow_code_fence is false)."
    options = {"allow_code_fence": True}

    def validate_config(self) -> None:
        _bool_option(self, "allow_code_fence")

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        try:
            _parse_json(data.output or "", self.config["allow_code_fence"])
        except ValueError as exc:
            return _verdict(False, f"not valid JSON: {exc}")
        return _verdict(True, "valid JSON")


@register
class JSONSchema(Evaluator):
    type_name = "json_schema"
    description = "The output is JSON that conforms to a JSON Schema."
    options = {"schema": REQUIRED, "allow_code_fence": True}

    def validate_config(self) -> None:
        import jsonschema

        _bool_option(self, "allow_code_fence")
        schema = self.config["schema"]
        if not isinstance(schema, (dict, bool)):
            raise _config_error("schema must be a JSON Schema object", "schema")
        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise _config_error(f"schema is not a valid JSON Schema: {exc.message}", "schema") from None
        self._validator = validator_class(schema)

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        try:
            value = _parse_json(data.output or "", self.config["allow_code_fence"])
        except ValueError as exc:
            return _verdict(False, f"not valid JSON: {exc}")
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if not errors:
            return _verdict(True, "conforms to the schema")
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return _verdict(False, f"at {where}: {first.message}{more}")


@register
class NumericCloseness(Evaluator):
    type_name = "numeric"
    description = "The first number in the output is within abs_tol or rel_tol of the expected number."
    options = {"abs_tol": 1e-6, "rel_tol": 0.0}

    def validate_config(self) -> None:
        _number_option(self, "abs_tol")
        _number_option(self, "rel_tol")

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        expected = _parse_number(_need_expected(data))
        if expected is None:
            raise EvaluatorError(f"expected output {_short(_as_text(data.expected))} is not a number")
        got = _parse_number(data.output or "")
        if got is None:
            return _verdict(False, "no number in the output")
        close = math.isclose(got, expected, rel_tol=self.config["rel_tol"], abs_tol=self.config["abs_tol"])
        diff = abs(got - expected)
        if close:
            return _verdict(True, f"{got:g} is within tolerance of {expected:g}")
        return _verdict(False, f"{got:g} differs from {expected:g} by {diff:g}")


@register
class LengthBounds(Evaluator):
    type_name = "length"
    description = "The output's length (characters or words) is within [min, max]."
    options = {"min": None, "max": None, "unit": "chars"}

    def validate_config(self) -> None:
        if self.config["unit"] not in ("chars", "words"):
            raise _config_error("unit must be 'chars' or 'words'", "unit")
        _number_option(self, "min", allow_none=True)
        _number_option(self, "max", allow_none=True)
        low, high = self.config["min"], self.config["max"]
        if low is None and high is None:
            raise _config_error("set min, max or both", "min")
        if low is not None and high is not None and low > high:
            raise _config_error("min must not exceed max", "min")

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        text = data.output or ""
        unit = self.config["unit"]
        size = len(text.split()) if unit == "words" else len(text)
        low, high = self.config["min"], self.config["max"]
        if low is not None and size < low:
            return _verdict(False, f"{size} {unit} is fewer than the minimum {low}")
        if high is not None and size > high:
            return _verdict(False, f"{size} {unit} is more than the maximum {high}")
        return _verdict(True, f"{size} {unit} is within bounds")


@register
class LatencyThreshold(Evaluator):
    type_name = "latency"
    description = "The call took at most max_ms milliseconds."
    options = {"max_ms": REQUIRED}

    def validate_config(self) -> None:
        _number_option(self, "max_ms")

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        if data.latency_ms is None:
            raise EvaluatorError("the latency of this call is unknown")
        passed = data.latency_ms <= self.config["max_ms"]
        op = "<=" if passed else ">"
        return _verdict(passed, f"{data.latency_ms:.0f} ms {op} {self.config['max_ms']} ms")


@register
class CostThreshold(Evaluator):
    type_name = "cost"
    description = "The call cost at most max_usd dollars."
    options = {"max_usd": REQUIRED}

    def validate_config(self) -> None:
        value = self.config["max_usd"]
        try:
            self._limit = Decimal(str(value))
        except InvalidOperation:
            raise _config_error("max_usd must be a number", "max_usd") from None
        if isinstance(value, bool) or not self._limit.is_finite() or self._limit < 0:
            raise _config_error("max_usd must be a number >= 0", "max_usd")

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        if data.cost is None:
            raise EvaluatorError("the cost of this call is unknown (unpriced model)")
        cost = Decimal(str(data.cost))
        passed = cost <= self._limit
        op = "<=" if passed else ">"
        return _verdict(passed, f"${cost} {op} ${self._limit}")


@register
class LLMJudge(Evaluator):
    """LLM-as-judge: renders a rubric prompt from the prompt store with `input`, `output`, `expected` (and the
    item's input variables), asks `endpoint`, and reads a score from the reply: a JSON object
    `{"score": <number>, "reason": "..."}` or, failing that, the first number. The score is normalised from
    [scale_min, scale_max] to [0, 1]; passed when the normalised score >= pass_threshold.

    The judge's own call is an ordinary LLM call (traced, priced, budgeted) attributed to the experiment and to the
    rubric prompt's name and version."""

    type_name = "llm_judge"
    description = "An LLM grades the output with a rubric prompt from the prompt store."
    uses_llm = True
    options = {
        "prompt": REQUIRED,
        "label": None,
        "version": None,
        "endpoint": REQUIRED,
        "scale_min": 1,
        "scale_max": 5,
        "pass_threshold": 0.5,
        "params": None,
    }

    def validate_config(self) -> None:
        for name in ("prompt", "endpoint"):
            if not isinstance(self.config[name], str) or not self.config[name]:
                raise _config_error(f"{name} must be a non-empty string", name)
        if self.config["label"] is not None and not isinstance(self.config["label"], str):
            raise _config_error("label must be a string", "label")
        version = self.config["version"]
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise _config_error("version must be a positive integer", "version")
        for name in ("scale_min", "scale_max", "pass_threshold"):
            _number_option(self, name, minimum=-1e9)
        if self.config["scale_max"] <= self.config["scale_min"]:
            raise _config_error("scale_max must be greater than scale_min", "scale_max")
        if not 0 <= self.config["pass_threshold"] <= 1:
            raise _config_error("pass_threshold must be between 0 and 1", "pass_threshold")
        if self.config["params"] is not None and not isinstance(self.config["params"], dict):
            raise _config_error("params must be an object", "params")

    def variables(self, data: EvaluationInput) -> dict[str, Any]:
        variables: dict[str, Any] = dict(data.input) if isinstance(data.input, dict) else {}
        variables.update(input=data.input, output=data.output, expected=data.expected)
        return variables

    def render(self, data: EvaluationInput) -> tuple[list[dict[str, Any]], str, int | None]:
        """(messages, prompt name, prompt version) of the rubric prompt rendered for this item, read as the Caller
        the judge grades for (the experiment's owner and team, bound by the runner; the live report's user)."""
        from experiments.prompting import caller_readers, render_messages

        return render_messages(
            name=self.config["prompt"],
            variables=self.variables(data),
            label=self.config["label"],
            version=self.config["version"],
            readers=caller_readers(),
        )

    def parse(self, reply: str) -> EvaluationResult:
        raw_score, reason = None, ""
        try:
            parsed = _parse_json(reply.strip(), True)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "score" in parsed:
            raw_score = _parse_number(parsed.get("score"))
            reason = str(parsed.get("reason") or parsed.get("explanation") or "")
        elif isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            raw_score = float(parsed)
        if raw_score is None:
            raw_score = _parse_number(reply)
            reason = reply.strip()
        if raw_score is None:
            raise EvaluatorError(f"the judge's reply has no score: {_short(reply)}")
        low, high = self.config["scale_min"], self.config["scale_max"]
        if not low <= raw_score <= high:
            raise EvaluatorError(f"the judge's score {raw_score:g} is outside [{low}, {high}]")
        score = (raw_score - low) / (high - low)
        passed = score >= self.config["pass_threshold"]
        return EvaluationResult(score=score, passed=passed, reason=f"judge: {raw_score:g}/{high:g}. {reason}".strip())

    def evaluate(self, data: EvaluationInput) -> EvaluationResult:
        from agent_platform.llm.client import complete
        from agent_platform.observability.context import bind_caller

        messages, prompt_name, prompt_version = self.render(data)
        with bind_caller(prompt_name=prompt_name, prompt_version=prompt_version):
            response = complete(endpoint=self.config["endpoint"], messages=messages, params=self.config["params"])
        return self.parse(response.content or "")

    async def aevaluate(self, data: EvaluationInput) -> EvaluationResult:
        from asgiref.sync import sync_to_async

        from agent_platform.llm.client import acomplete
        from agent_platform.observability.context import bind_caller

        messages, prompt_name, prompt_version = await sync_to_async(self.render, thread_sensitive=True)(data)
        with bind_caller(prompt_name=prompt_name, prompt_version=prompt_version):
            response = await acomplete(
                endpoint=self.config["endpoint"], messages=messages, params=self.config["params"]
            )
        return self.parse(response.content or "")


def _short(text: str, limit: int = 80) -> str:
    text = str(text)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


__all__ = [
    "REGISTRY",
    "ConfiguredEvaluator",
    "EvaluationInput",
    "EvaluationResult",
    "Evaluator",
    "EvaluatorError",
    "arun_evaluator",
    "build_evaluators",
    "get_evaluator_class",
    "register",
    "run_evaluator",
    "unregister",
]
