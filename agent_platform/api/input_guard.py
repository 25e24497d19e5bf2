"""What no request may carry past the front door: NUL characters, JSON nested too deep, bodies over the size limit.

PostgreSQL cannot store a NUL character in text (a query filter with one raises DataError), and Python's JSON
decoder and every recursive walk after it fail on deep nesting (RecursionError): both are refused here, once for
every view, before anything reaches a view, a serializer or the database.
"""

from __future__ import annotations

import json
import re
from typing import Any

NUL = "\x00"
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# opening brackets step the depth up by one, closing ones down by one (0xff is -1 as a signed byte)
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NON_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class InputRefused(Exception):
    """A request refused before any view ran: the registry code, a message and the details to answer with."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def printable(name: str) -> str:
    """A name that may hold a NUL, fit to echo back."""
    return name.replace(NUL, "\\x00")


def refuse_nul(field: str) -> InputRefused:
    return InputRefused(
        "VALIDATION_ERROR",
        f"{printable(field)}: NUL characters (\\x00) are not allowed.",
        {"field": printable(field), "fields": {printable(field): ["NUL characters (\\x00) are not allowed."]}},
    )


def check_path_and_query(path: str, query: Any) -> None:
    """Refuse a NUL in the decoded path or in any query parameter's name or value (`query`: a QueryDict)."""
    if NUL in path:
        raise refuse_nul("path")
    for name, values in query.lists():
        if NUL in name or any(NUL in value for value in values):
            raise refuse_nul(name)


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in a JSON text, counted without decoding it (brackets inside strings do
    not count), so a hostile body cannot make the decoder recurse before its depth is known."""
    import numpy  # only for bodies with many brackets; the running depth in C, not a Python loop per bracket

    # Without an escaped quote every quote opens or closes a string, so what lies outside strings is every other
    # piece between quotes (3x faster than the regex, which finds where strings end the careful way).
    escaped_quote = b'\\"' in body
    structure = _JSON_STRING.sub(b"", body) if escaped_quote else b"".join(body.split(b'"')[0::2])
    steps = structure.translate(_STEPS, _NON_BRACKETS)
    if not steps:
        return 0
    return int(numpy.frombuffer(steps, dtype=numpy.int8).cumsum(dtype=numpy.int64).max())


def _nul_location(value: Any) -> str | None:
    """The path ("messages[0].content") of the first string holding a NUL, keys included; iterative, not recursive."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return path or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if NUL in key:
                    return name
                stack.append((name, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
    return None


def check_json_body(body: bytes, *, max_depth: int) -> None:
    """Refuse a JSON body nested deeper than `max_depth` (INPUT_TOO_DEEP) or holding a NUL in any string
    (VALIDATION_ERROR naming the field). A body that is not JSON at all is left to the parser's PARSE_ERROR."""
    # A body with no more brackets than the limit cannot nest deeper than it: the common case costs two counts.
    depth = json_depth(body) if body.count(b"[") + body.count(b"{") > max_depth else 0
    if depth > max_depth:
        raise InputRefused(
            "INPUT_TOO_DEEP",
            f"The JSON body nests {depth} levels deep; at most {max_depth} are allowed.",
            {"max_depth": max_depth},
        )
    if b"\\u0000" not in body:
        return
    try:
        parsed = json.loads(body)
    except ValueError:
        return
    location = _nul_location(parsed)
    if location is not None:
        raise refuse_nul(location)


def check_form(form: Any) -> None:
    """Refuse a NUL in any field of a url-encoded form (`form`: a QueryDict)."""
    for name, values in form.lists():
        if NUL in name or any(NUL in value for value in values):
            raise refuse_nul(name)
