"""Parse and validate dataset files (CSV, JSONL) into item dicts, collecting every row's errors.

Formats
- JSONL: one JSON object per line. Keys: `input` (object of template variables), `messages` (list of chat
  messages), `expected` (any JSON value), `metadata` (object). Without an `input` key, every other key that is not
  one of those becomes an input variable, so `{"question": "2+2?", "expected": "4"}` works. Blank lines are skipped.
- CSV: a header row. Columns `expected`, `metadata` (a JSON object) and `messages` (a JSON list) are special; every
  other column is an input variable (an `input.` prefix is allowed and stripped). Row numbers count the header as
  row 1, as a spreadsheet shows them.

Every item needs input variables or messages. Errors name the row (or line) and the field.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

RESERVED = ("input", "messages", "expected", "metadata")
ROLES = ("system", "user", "assistant", "tool")
MAX_VARIABLE_NAME = 100


@dataclass
class RowError:
    row: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass
class ParsedItems:
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def validate_messages(value: Any) -> str | None:
    """None if `value` is a list of OpenAI-format messages, else what is wrong with it."""
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of messages"
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            return f"[{index}] must be an object"
        if message.get("role") not in ROLES:
            return f"[{index}].role must be one of {', '.join(ROLES)}"
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            return f"[{index}].content must be a string"
        if content is None and not message.get("tool_calls"):
            return f"[{index}].content is required"
    return None


def validate_item(raw: dict[str, Any], row: int) -> tuple[dict[str, Any] | None, list[RowError]]:
    """Normalise one item {input, messages, expected, metadata}; (None, errors) when invalid."""
    errors: list[RowError] = []
    variables = raw.get("input")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        errors.append(RowError(row, "input", "must be an object of template variables"))
        variables = {}
    for name in variables:
        if not isinstance(name, str) or not name or len(name) > MAX_VARIABLE_NAME:
            errors.append(RowError(row, "input", f"variable name {name!r} must be 1-{MAX_VARIABLE_NAME} characters"))
    messages = raw.get("messages")
    if messages is not None:
        problem = validate_messages(messages)
        if problem:
            errors.append(RowError(row, "messages", problem))
    metadata = raw.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        errors.append(RowError(row, "metadata", "must be a JSON object"))
    if not variables and not messages and not errors:
        errors.append(RowError(row, "input", "an item needs input variables or messages"))
    if errors:
        return None, errors
    return {"input": variables, "messages": messages, "expected": raw.get("expected"), "metadata": metadata}, []


def parse_jsonl(text: str) -> ParsedItems:
    parsed = ParsedItems()
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            parsed.errors.append(RowError(line_number, "(line)", f"not valid JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(obj, dict):
            parsed.errors.append(RowError(line_number, "(line)", "must be a JSON object"))
            continue
        if "input" not in obj:
            extra = {k: v for k, v in obj.items() if k not in RESERVED}
            obj = {**{k: obj[k] for k in RESERVED if k in obj}, "input": extra}
        else:
            unknown = sorted(k for k in obj if k not in RESERVED)
            if unknown:
                parsed.errors.append(RowError(line_number, unknown[0], "unknown key (with 'input' present)"))
                continue
        item, errors = validate_item(obj, line_number)
        parsed.errors.extend(errors)
        if item is not None:
            parsed.items.append(item)
    return parsed


def _json_cell(value: str, row: int, name: str, errors: list[RowError]) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        errors.append(RowError(row, name, f"not valid JSON: {exc.msg}"))
        return None


def parse_csv(text: str) -> ParsedItems:
    parsed = ParsedItems()
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        parsed.errors.append(RowError(1, "(header)", "the file is empty; the first row must name the columns"))
        return parsed
    except csv.Error as exc:
        parsed.errors.append(RowError(1, "(header)", f"not valid CSV: {exc}"))
        return parsed
    columns = [c.strip() for c in header]
    seen: set[str] = set()
    for name in columns:
        if not name:
            parsed.errors.append(RowError(1, "(header)", "a column has no name"))
        elif name in seen:
            parsed.errors.append(RowError(1, name, "the column appears twice"))
        seen.add(name)
    if parsed.errors:
        return parsed
    row_number = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.errors.append(RowError(reader.line_num, "(row)", f"not valid CSV: {exc}"))
            break
        row_number += 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(columns):
            parsed.errors.append(
                RowError(row_number, "(row)", f"has {len(cells)} fields, the header has {len(columns)}")
            )
            continue
        errors: list[RowError] = []
        raw: dict[str, Any] = {"input": {}}
        for name, value in zip(columns, cells, strict=True):
            if name == "expected":
                raw["expected"] = value if value != "" else None
            elif name in ("metadata", "messages"):
                if value.strip():
                    raw[name] = _json_cell(value, row_number, name, errors)
            else:
                raw["input"][name.removeprefix("input.")] = value
        if errors:
            parsed.errors.extend(errors)
            continue
        item, item_errors = validate_item(raw, row_number)
        parsed.errors.extend(item_errors)
        if item is not None:
            parsed.items.append(item)
    return parsed


def to_jsonl(items: list[dict[str, Any]]) -> str:
    lines = []
    for item in items:
        obj = {"input": item["input"]}
        if item.get("messages"):
            obj["messages"] = item["messages"]
        if item.get("expected") is not None:
            obj["expected"] = item["expected"]
        if item.get("metadata"):
            obj["metadata"] = item["metadata"]
        lines.append(json.dumps(obj, ensure_ascii=False, sort_keys=False))
    return "\n".join(lines) + ("\n" if lines else "")


def to_csv(items: list[dict[str, Any]]) -> str:
    variables: list[str] = []
    for item in items:
        for name in item["input"]:
            if name not in variables:
                variables.append(name)
    has_messages = any(item.get("messages") for item in items)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = [n if n not in RESERVED else f"input.{n}" for n in variables] + ["expected", "metadata"]
    if has_messages:
        header.append("messages")
    writer.writerow(header)
    for item in items:
        row = [_cell(item["input"].get(name, "")) for name in variables]
        row.append(_cell(item.get("expected")))
        row.append(json.dumps(item["metadata"], ensure_ascii=False) if item.get("metadata") else "")
        if has_messages:
            row.append(json.dumps(item["messages"], ensure_ascii=False) if item.get("messages") else "")
        writer.writerow(row)
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
