"""PII detection, masking and reversible anonymisation.

    f = PIIFilter()
    f.detect_pii("mail me at ann@example.com")   # [PIIMatch(type="EMAIL", start=11, end=26, text=...)]
    f.mask_pii(text)                               # "mail me at [EMAIL]"
    anon = Anonymizer(); anon.anonymize(text)      # "mail me at <EMAIL_1>"; anon.deanonymize(reply) restores it

Types: EMAIL, PHONE (international and common national formats), CREDIT_CARD (Luhn), IBAN (ISO 13616 mod-97),
IP_ADDRESS (IPv4, IPv6, validated), SSN (US, strict pattern excluding never-issued ranges), NATIONAL_ID (UK NINO
strict pattern, Spanish DNI/NIE check letter), API_KEY (vendor key formats, JWTs, bearer tokens, private keys,
`key=value` secrets). Validation (checksums, ranges) keeps false positives down: a random 16-digit number that
fails Luhn is not a card.

Detection runs on the text's NFKC form (full-width `４１１１` and `＠` count as `4111` and `@`); findings are reported
at their place in the original text. `mask_for_storage` masks every string of a JSON-like value, for what is stored
for an agent whose policy masks PII; `StreamMasker` does the same for text that arrives in pieces.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

EMAIL = "EMAIL"
PHONE = "PHONE"
CREDIT_CARD = "CREDIT_CARD"
IBAN = "IBAN"
IP_ADDRESS = "IP_ADDRESS"
SSN = "SSN"
NATIONAL_ID = "NATIONAL_ID"
API_KEY = "API_KEY"
ALL_TYPES = (API_KEY, EMAIL, IBAN, CREDIT_CARD, SSN, NATIONAL_ID, IP_ADDRESS, PHONE)  # priority on overlap


@dataclass(frozen=True)
class PIIMatch:
    type: str
    start: int
    end: int
    text: str


# --- validators ------------------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
    "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18,
    "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29,
    "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26,
    "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip


def iban_valid(value: str) -> bool:
    compact = re.sub(r"[\s-]", "", value).upper()
    expected = IBAN_LENGTHS.get(compact[:2])
    if expected is None or len(compact) != expected or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_valid(value: str) -> bool:
    compact = value.upper().replace("-", "").replace(" ", "")
    if compact[0] in "XYZ":
        compact = str("XYZ".index(compact[0])) + compact[1:]
    number, letter = compact[:-1], compact[-1]
    return number.isdigit() and _DNI_LETTERS[int(number) % 23] == letter


def ipv4_valid(value: str) -> bool:
    parts = value.split(".")
    return len(parts) == 4 and all(p.isdigit() and (p == "0" or not p.startswith("0")) and int(p) <= 255 for p in parts)


def ipv6_valid(value: str) -> bool:
    if value.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


# --- patterns --------------------------------------------------------------------------------------------------

_B = r"(?<![\w.+-])"  # left boundary: not inside a word, number or address
_E = r"(?![\w-]|\.\w)"  # right boundary

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}\b"
)
_CARD = re.compile(_B + r"(?:[0-9][ .-]?){12,18}[0-9](?![0-9])")
_CARD_SEPARATOR = re.compile(r"[ .-]")
_CARD_GROUPS = re.compile(r"\d{4}(?:[ .-]\d{4}){2,3}(?:[ .-]\d{1,3})?|\d{4}[ .-]\d{6}[ .-]\d{4,5}")
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})[0-9]{2}")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
# the dotted tail is tried first, so that an IPv4-mapped address (::ffff:10.0.0.1) is taken whole
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_NINO = re.compile(r"\b(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_DNI = re.compile(r"\b(?:\d{8}|[XYZ]\d{7})-?[A-Z]\b")
_PHONE = re.compile(
    r"(?<![\w+/.-])"
    r"(?:"
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?)(?:[ .-]?\d{2,4}){2,5}"  # +44 20 7946 0958, +1 (415) 555-0132
    r"|00\d{1,3}(?:[ .-]\d{2,4}){3,5}"  # 0049 30 1234 5678
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}"  # (415) 555-0132
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 415-555-0132
    r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}"  # 020 7946 0958, 07700 900123
    r")"
    r"(?![\w-]|\.\d)"
)
_API_KEY_PATTERNS = [
    re.compile(r"\bsk-(?:proj-|ant-(?:api\d\d-)?|or-v1-)?[A-Za-z0-9_-]{20,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bgsk_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bap_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}"),  # this platform's own API keys
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]+?-----END (?:[A-Z]+ )?PRIVATE KEY-----"),
]
_BEARER = re.compile(r"\b[Bb]earer\s+([A-Za-z0-9._~+/=-]{16,})")
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd)\b"
    r"[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9_\-./+=!@#$%^&*]{12,})"
)


def _finditer(pattern: re.Pattern, text: str, kind: str, check: Callable[[str], bool] | None = None, group: int = 0):
    for match in pattern.finditer(text):
        value = match.group(group)
        if check is None or check(value):
            yield PIIMatch(kind, match.start(group), match.end(group), value)


def _card_check(value: str) -> bool:
    digits = re.sub(r"[^0-9]", "", value)
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    # Separators (space, dot, dash), when present, form regular groups (4-4-4-4, 4-6-5, ...), not random splits.
    if _CARD_SEPARATOR.search(value) and not _CARD_GROUPS.fullmatch(value):
        return False
    return luhn_valid(digits)


def _detect_cards(text: str) -> Iterable[PIIMatch]:
    """Card-like runs of digits; when a run fails, it is tried without its trailing groups ("4111 1111 1111 1111 12"
    is a card followed by a number)."""
    for match in _CARD.finditer(text):
        value = match.group(0)
        while True:
            if _card_check(value):
                yield PIIMatch(CREDIT_CARD, match.start(), match.start() + len(value), value)
                break
            cut = max((m.start() for m in _CARD_SEPARATOR.finditer(value)), default=-1)
            if cut <= 0:
                break
            value = value[:cut]


def _detect_ibans(text: str) -> Iterable[PIIMatch]:
    """A country code and check digits (any case), then exactly as many letters and digits as that country's IBAN
    has, single spaces or dashes allowed between them; then the mod-97 check."""
    for match in _IBAN_START.finditer(text):
        expected = IBAN_LENGTHS.get(match.group(1).upper())
        if expected is None:
            continue
        count, position, end = 4, match.end(), match.end()
        while count < expected and position < len(text):
            char = text[position]
            if char.isascii() and char.isalnum():
                count, position, end = count + 1, position + 1, position + 1
            elif char in " -" and position == end:
                position += 1
            else:
                break
        if count != expected or (end < len(text) and text[end].isascii() and text[end].isalnum()):
            continue
        value = text[match.start() : end]
        if iban_valid(value):
            yield PIIMatch(IBAN, match.start(), end, value)


def _phone_check(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    if value.startswith(("+", "00")):
        return 8 <= len(digits) <= 15
    return 10 <= len(digits) <= 11


def _detect_api_keys(text: str) -> Iterable[PIIMatch]:
    for pattern in _API_KEY_PATTERNS:
        yield from _finditer(pattern, text, API_KEY)
    yield from _finditer(_BEARER, text, API_KEY, group=1)
    yield from _finditer(
        _ASSIGNED_SECRET, text, API_KEY, check=lambda v: bool(re.search(r"\d", v)) and len(set(v)) > 6, group=1
    )


DETECTORS: dict[str, Callable[[str], Iterable[PIIMatch]]] = {
    EMAIL: lambda text: _finditer(_EMAIL, text, EMAIL),
    CREDIT_CARD: _detect_cards,
    IBAN: _detect_ibans,
    IP_ADDRESS: lambda text: [
        *_finditer(_IPV4, text, IP_ADDRESS, ipv4_valid),
        *_finditer(_IPV6, text, IP_ADDRESS, ipv6_valid),
    ],
    SSN: lambda text: _finditer(_SSN, text, SSN),
    NATIONAL_ID: lambda text: [*_finditer(_NINO, text, NATIONAL_ID), *_finditer(_DNI, text, NATIONAL_ID, dni_valid)],
    API_KEY: _detect_api_keys,
    PHONE: lambda text: _finditer(_PHONE, text, PHONE, _phone_check),
}  # fmt: skip


def _nfkc(text: str) -> tuple[str, list[int] | None]:
    """The text in NFKC form, character by character, with the original index of each character of the result
    (None when the text is its own NFKC form). Full-width digits, letters and `＠` become ASCII; so do no-break
    spaces, which separate the groups of a card number as well as a space does."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text, None
    pieces: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        normal = char if char.isascii() else unicodedata.normalize("NFKC", char)
        pieces.append(normal)
        origin.extend([index] * len(normal))
    return "".join(pieces), origin


class PIIFilter:
    """Detect, mask and anonymise PII. `types` limits what is looked for (default: every type)."""

    def __init__(self, types: Iterable[str] | None = None) -> None:
        selected = tuple(types) if types is not None else ALL_TYPES
        unknown = set(selected) - set(ALL_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types: {', '.join(sorted(unknown))}")
        self.types = tuple(t for t in ALL_TYPES if t in selected)

    def detect_pii(self, text: str) -> list[PIIMatch]:
        if not text:
            return []
        normal, origin = _nfkc(text)
        priority = {kind: index for index, kind in enumerate(ALL_TYPES)}
        found: list[PIIMatch] = []
        for kind in self.types:
            found.extend(DETECTORS[kind](normal))
        # Longest first at a position, then by priority; drop anything overlapping an accepted match.
        found.sort(key=lambda m: (m.start, -(m.end - m.start), priority[m.type]))
        accepted: list[PIIMatch] = []
        for match in found:
            if accepted and match.start < accepted[-1].end:
                previous = accepted[-1]
                if (match.end - match.start) > (previous.end - previous.start) and priority[match.type] < priority[
                    previous.type
                ]:
                    accepted[-1] = match
                continue
            accepted.append(match)
        if origin is None:
            return accepted
        located = []
        for match in accepted:  # back to the original text's positions and characters
            start, end = origin[match.start], origin[match.end - 1] + 1
            located.append(PIIMatch(match.type, start, end, text[start:end]))
        return located

    detect = detect_pii

    def mask_pii(self, text: str) -> str:
        """Each finding replaced by its type, e.g. `[EMAIL]` (irreversible)."""
        return self._replace(text, lambda match: f"[{match.type}]")

    mask = mask_pii

    def anonymize(self, text: str) -> str:
        """Typed, numbered placeholders (`<EMAIL_1>`); use an `Anonymizer` to keep the mapping and reverse it."""
        return Anonymizer(self).anonymize(text)

    def _replace(self, text: str, replacement: Callable[[PIIMatch], str]) -> str:
        matches = self.detect_pii(text)
        if not matches:
            return text
        out, position = [], 0
        for match in matches:
            out.append(text[position : match.start])
            out.append(replacement(match))
            position = match.end
        out.append(text[position:])
        return "".join(out)


_PLACEHOLDER = re.compile(r"<([A-Z_]+)_(\d+)>")
_PARTIAL_PLACEHOLDER = re.compile(r"<[A-Z_]*(?:_\d*)?$")


class Anonymizer:
    """Reversible anonymisation for one conversation: the same value always gets the same placeholder."""

    def __init__(self, pii_filter: PIIFilter | None = None) -> None:
        self.filter = pii_filter or default_filter()
        self.by_value: dict[tuple[str, str], str] = {}
        self.by_placeholder: dict[str, str] = {}
        self.counters: dict[str, int] = {}

    @property
    def count(self) -> int:
        return len(self.by_placeholder)

    def _placeholder(self, match: PIIMatch) -> str:
        key = (match.type, match.text)
        existing = self.by_value.get(key)
        if existing:
            return existing
        number = self.counters.get(match.type, 0) + 1
        self.counters[match.type] = number
        placeholder = f"<{match.type}_{number}>"
        self.by_value[key] = placeholder
        self.by_placeholder[placeholder] = match.text
        return placeholder

    def anonymize(self, text: str) -> str:
        return self.filter._replace(text, self._placeholder)

    def deanonymize(self, text: str | None) -> str:
        if not text or not self.by_placeholder:
            return text or ""
        return _PLACEHOLDER.sub(lambda m: self.by_placeholder.get(m.group(0), m.group(0)), text)

    def anonymize_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A copy of OpenAI-format messages with text content and tool-call arguments anonymised."""
        result = []
        for message in messages:
            copy = dict(message)
            content = message.get("content")
            if isinstance(content, str):
                copy["content"] = self.anonymize(content)
            elif isinstance(content, list):
                copy["content"] = [
                    {**part, "text": self.anonymize(part["text"])}
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                    else part
                    for part in content
                ]
            if message.get("tool_calls"):
                calls = []
                for call in message["tool_calls"]:
                    function = dict(call.get("function") or {})
                    if isinstance(function.get("arguments"), str):
                        function["arguments"] = self.anonymize(function["arguments"])
                    calls.append({**call, "function": function})
                copy["tool_calls"] = calls
            result.append(copy)
        return result

    def stream(self) -> StreamDeanonymizer:
        return StreamDeanonymizer(self)


class StreamDeanonymizer:
    """De-anonymises a token stream, holding back a placeholder split across chunks (`<EMA` + `IL_1>`)."""

    def __init__(self, anonymizer: Anonymizer) -> None:
        self.anonymizer = anonymizer
        self.pending = ""

    def feed(self, text: str) -> str:
        buffer = self.pending + text
        cut = buffer.rfind("<")
        if cut != -1 and len(buffer) - cut <= 32 and _PARTIAL_PLACEHOLDER.match(buffer, cut):
            self.pending = buffer[cut:]
            buffer = buffer[:cut]
        else:
            self.pending = ""
        return self.anonymizer.deanonymize(buffer)

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return self.anonymizer.deanonymize(rest)


_default: PIIFilter | None = None


def default_filter() -> PIIFilter:
    global _default
    if _default is None:
        _default = PIIFilter()
    return _default


def mask_pii(text: str) -> str:
    return default_filter().mask_pii(text)


def detect_pii(text: str) -> list[PIIMatch]:
    return default_filter().detect_pii(text)


def mask_for_storage(value: Any) -> Any:
    """`value` as it may be stored where an agent's policy masks PII: every string in it (dict keys and values,
    list items, at any depth) with each finding replaced by its type. Anything else is returned as it is."""
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, dict):
        return {mask_for_storage(k): mask_for_storage(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_for_storage(item) for item in value]
    return value


class StreamMasker:
    """Masks text that arrives in pieces (a model's tokens). The last `hold` characters are held back, since a
    finding may still be arriving (`ann@exa` + `mple.com`), and so is any finding that reaches into them; `flush`
    returns the rest at the end. Joined, the pieces equal `mask_pii` of the whole text."""

    def __init__(self, hold: int = 64, pii_filter: PIIFilter | None = None) -> None:
        self.hold = hold
        self.filter = pii_filter or default_filter()
        self.pending = ""

    def feed(self, text: str) -> str:
        buffer = self.pending + text
        cut = len(buffer) - self.hold
        if cut <= 0:
            self.pending = buffer
            return ""
        matches = self.filter.detect_pii(buffer)
        for match in matches:
            if match.start < cut < match.end:
                cut = match.start
                break
        self.pending = buffer[cut:]
        out, position = [], 0
        for match in matches:
            if match.end > cut:
                break
            out.append(buffer[position : match.start])
            out.append(f"[{match.type}]")
            position = match.end
        out.append(buffer[position:cut])
        return "".join(out)

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return self.filter.mask_pii(rest)
