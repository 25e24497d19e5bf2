"""Reads of the prompt store: versions, labels, point-in-time state, diffs, the cached fetch.

`get_prompt(name)` with neither a label nor a version serves the `production` label; when a prompt has no
`production` label yet it serves the latest version (so a prompt is usable from its first save; set `production`
to pin it). `latest` is computed (the newest version), never stored.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from jinja2 import Template

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import current_caller
from prompts import cache as prompt_cache
from prompts.models import LabelMove, Prompt, PromptReview
from prompts.rendering import compile_template

PRODUCTION = "production"
LATEST = "latest"
CONTENT_FIELDS = (
    "description",
    "tags",
    "template_type",
    "text",
    "messages",
    "variables",
    "model_endpoint",
    "params",
    "requires_approval",
)


def not_found(message: str, **details: Any) -> PlatformError:
    return PlatformError(message, code="PROMPT_NOT_FOUND", details=details)


# --- access: the one rule for prompts ---------------------------------------------------------------------------
#
# Read: staff (is_staff or is_superuser) read every prompt; everyone reads a shared prompt (one without a team);
# a team's prompt is read by the team's members and by its owner (`created_by`).
# Write (new versions, metadata, team, approval settings, labels, reviews, delete): staff; the prompt's owner; for a
# team's prompt, the team's members. A shared prompt is therefore writable only by its owner and staff (and an
# owner-less shared prompt, such as the demo content, by staff only).
# `user=None` (and no `readers`) is the platform itself (demo loader, management commands): it reads and writes
# everything. Every path that acts for people passes them: the API its caller (`user`); an agent run its owner, team
# and caller, an experiment its owner and team, the prompt_lookup tool the run's caller and the agent's owner and
# team (`readers`, a `PromptReaders`: each of them must be allowed to read the prompt).
# A prompt a caller may not read is `PROMPT_NOT_FOUND` with the same message as a missing one.


def _is_staff(user) -> bool:
    return bool(user.is_staff or user.is_superuser)


def _readable_q(user_id: int) -> Q:
    """The read rule for a non-staff user, as a filter on Prompt."""
    from agent_platform.accounts.models import Team

    return Q(team__isnull=True) | Q(created_by_id=user_id) | Q(team__in=Team.objects.filter(members__id=user_id))


def visible_prompts(*, user=None) -> QuerySet[Prompt]:
    """Prompts `user` may read (the rule above). `user=None` is the platform itself: everything."""
    qs = Prompt.objects.all()
    if user is None:
        return qs
    if not user.is_authenticated:
        return qs.none()
    if _is_staff(user):
        return qs
    # team membership as a subquery, not a join: no duplicate rows, so no DISTINCT
    return qs.filter(_readable_q(user.pk))


def prompt_readable_by(*, prompt: Prompt, user) -> bool:
    """Whether `user` may read `prompt` (its text, versions, labels, reviews, renders)."""
    if user is None:
        return True
    if not user.is_authenticated:
        return False
    if _is_staff(user) or prompt.team_id is None or prompt.created_by_id == user.pk:
        return True
    return user.teams.filter(pk=prompt.team_id).exists()


def prompt_writable_by(*, prompt: Prompt, user) -> bool:
    """Whether `user` may change `prompt`: save versions, change metadata, team or approval, move labels, delete."""
    if user is None:
        return True
    if not user.is_authenticated:
        return False
    if _is_staff(user) or (prompt.created_by_id is not None and prompt.created_by_id == user.pk):
        return True
    return prompt.team_id is not None and user.teams.filter(pk=prompt.team_id).exists()


def team_usable_by(*, team, user) -> bool:
    """Whether `user` may give a prompt to `team` (create it there or move it there): members and staff."""
    if team is None or user is None:
        return True
    if not user.is_authenticated:
        return False
    return _is_staff(user) or team.members.filter(pk=user.pk).exists()


@dataclass(frozen=True)
class PromptReaders:
    """Everyone who will see a prompt's text through an indirect path: each user and each team listed must be
    allowed to read the prompt. An agent run lists the agent's owner and team and the run's caller; an experiment
    its owner and team; the prompt_lookup tool the run's caller and the agent's owner and team.

    Nobody listed (an owner-less, team-less agent run without a caller) is nobody in particular: shared prompts
    only. Only `readers=None` is the platform itself."""

    user_ids: tuple[int, ...] = ()
    team_ids: tuple[int, ...] = ()

    @classmethod
    def of(cls, *, user_ids=(), team_ids=()) -> PromptReaders:
        """Readers from ids, None entries (no owner, no team, no caller) left out."""
        return cls(
            user_ids=tuple(dict.fromkeys(int(u) for u in user_ids if u is not None)),
            team_ids=tuple(dict.fromkeys(int(t) for t in team_ids if t is not None)),
        )


def prompts_readable_by_all(*, readers: PromptReaders) -> QuerySet[Prompt]:
    """Prompts every one of `readers` may read (the rule above, in one query): a team reads shared prompts and its
    own; a user id that does not exist reads nothing; no readers at all read shared prompts only."""
    from django.contrib.auth import get_user_model
    from django.db.models import Exists

    qs = Prompt.objects.all()
    if not readers.user_ids and not readers.team_ids:
        return qs.filter(team__isnull=True)
    users = get_user_model().objects
    for user_id in readers.user_ids:
        staff = users.filter(Q(is_staff=True) | Q(is_superuser=True), pk=user_id)
        qs = qs.filter(Exists(users.filter(pk=user_id))).filter(Exists(staff) | _readable_q(user_id))
    for team_id in readers.team_ids:
        qs = qs.filter(Q(team__isnull=True) | Q(team_id=team_id))
    return qs


def _readable_named(*, name: str, user, readers: PromptReaders | None) -> QuerySet[Prompt]:
    qs = visible_prompts(user=user)
    if readers is not None:
        qs = qs.filter(pk__in=prompts_readable_by_all(readers=readers).values("pk"))
    return qs.filter(name=name)


def prompt_by_name(*, name: str, user=None, readers: PromptReaders | None = None) -> Prompt:
    """The prompt `name` if `user` (and every one of `readers`) may read it, else PROMPT_NOT_FOUND exactly as for a
    prompt that does not exist."""
    prompt = _readable_named(name=name, user=user, readers=readers).first()
    if prompt is None:
        raise not_found(f"No prompt named '{name}'.", name=name)
    return prompt


def prompt_require_readable(*, name: str, user=None, readers: PromptReaders | None = None) -> None:
    """`prompt_by_name` as a check only (one small query): PROMPT_NOT_FOUND unless readable."""
    if not _readable_named(name=name, user=user, readers=readers).exists():
        raise not_found(f"No prompt named '{name}'.", name=name)


def prompt_list(*, user=None, search: str | None = None, tag: str | None = None) -> QuerySet[Prompt]:
    qs = visible_prompts(user=user).prefetch_related("labels")
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    if tag:
        qs = qs.filter(tags__contains=[tag]) if _json_contains_supported() else qs.filter(tags__icontains=f'"{tag}"')
    return qs


def _json_contains_supported() -> bool:
    from django.db import connection

    return connection.features.supports_json_field_contains


# --- versions ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptVersion:
    """One version of a prompt (immutable), plus how it was reached (label, A/B variant)."""

    name: str
    version: int
    template_type: str
    text: str
    messages: list[dict[str, str]]
    variables: list[dict[str, Any]]
    model_endpoint: str
    params: dict[str, Any]
    description: str = ""
    tags: list[str] = field(default_factory=list)
    requires_approval: bool = False
    author: str | None = None
    created_at: datetime | None = None
    change_note: str = ""
    label: str | None = None
    ab_variant: str | None = None
    compiled: tuple[Template, ...] | None = field(default=None, compare=False, repr=False)

    def content(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in CONTENT_FIELDS}

    def with_compiled(self) -> PromptVersion:
        if self.compiled is not None:
            return self
        if self.template_type == Prompt.TemplateType.CHAT:
            templates = tuple(
                compile_template(m.get("content", ""), where={"message_index": i}) for i, m in enumerate(self.messages)
            )
        else:
            templates = (compile_template(self.text),)
        return replace(self, compiled=templates)

    def to_cache(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "compiled"}
        return data


def _version_from_history(record: Any) -> PromptVersion:
    user = getattr(record, "history_user", None)
    return PromptVersion(
        name=record.name,
        version=record.version,
        template_type=record.template_type,
        text=record.text,
        messages=record.messages or [],
        variables=record.variables or [],
        model_endpoint=record.model_endpoint,
        params=record.params or {},
        description=record.description,
        tags=record.tags or [],
        requires_approval=record.requires_approval,
        author=user.get_username() if user is not None else None,
        created_at=record.history_date,
        change_note=record.history_change_reason or "",
    )


def _history(prompt: Prompt):
    return Prompt.history.filter(id=prompt.pk).exclude(history_type="-").select_related("history_user")


def version_record(*, prompt: Prompt, version: int) -> PromptVersion:
    record = _history(prompt).filter(version=version).order_by("-history_id").first()
    if record is None:
        raise not_found(f"Prompt '{prompt.name}' has no version {version}.", name=prompt.name, version=version)
    return _version_from_history(record)


def list_versions(*, name: str, user=None) -> list[PromptVersion]:
    """Every version, newest first."""
    prompt = prompt_by_name(name=name, user=user)
    seen: set[int] = set()
    versions = []
    for record in _history(prompt).order_by("-version", "-history_id"):
        if record.version not in seen:
            seen.add(record.version)
            versions.append(_version_from_history(record))
    return versions


def version_exists(*, prompt: Prompt, version: int) -> bool:
    return 1 <= version <= prompt.version and _history(prompt).filter(version=version).exists()


# --- labels ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelInfo:
    name: str
    version: int
    protected: bool
    split: dict[str, float] | None
    computed: bool = False
    updated_by: str | None = None
    updated_at: datetime | None = None


def label_list(*, name: str, user=None) -> list[LabelInfo]:
    """The prompt's labels, with the computed `latest` first."""
    prompt = prompt_by_name(name=name, user=user)
    labels = [LabelInfo(name=LATEST, version=prompt.version, protected=False, split=None, computed=True)]
    for label in prompt.labels.select_related("updated_by").order_by("name"):
        labels.append(
            LabelInfo(
                name=label.name,
                version=label.version,
                protected=label.protected,
                split=label.split or None,
                updated_by=label.updated_by.get_username() if label.updated_by else None,
                updated_at=label.updated_at,
            )
        )
    return labels


def label_moves(*, name: str, label: str | None = None, user=None) -> QuerySet[LabelMove]:
    prompt = prompt_by_name(name=name, user=user)
    qs = prompt.label_moves.select_related("moved_by")
    return qs.filter(label=label) if label else qs


def review_list(*, name: str, version: int | None = None, user=None) -> QuerySet[PromptReview]:
    prompt = prompt_by_name(name=name, user=user)
    qs = prompt.reviews.select_related("requested_by", "reviewed_by")
    return qs.filter(version=version) if version is not None else qs


def version_is_approved(*, prompt: Prompt, version: int) -> bool:
    return prompt.reviews.filter(version=version, state=PromptReview.State.APPROVED).exists()


# --- A/B split -----------------------------------------------------------------------------------------------------


def stickiness_key_from_caller() -> str | None:
    caller = current_caller()
    for value in (caller.conversation_id, caller.session_id, caller.user_id, caller.run_id):
        if value not in (None, ""):
            return str(value)
    return None


def assign_variant(*, split: dict[str, float], key: str | None, salt: str) -> int:
    """Pick a version from `{version: weight}`: stable for one key (same key → same version while the split is
    unchanged), random without a key. Weights need not sum to 100."""
    items = sorted(((int(v), float(w)) for v, w in split.items() if float(w) > 0), key=lambda item: item[0])
    total = sum(w for _, w in items)
    if not items or total <= 0:
        raise PlatformError("The label's split has no positive weight.", code="VALIDATION_ERROR", field="split")
    if key is None:
        point = random.random() * total
    else:
        digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * total
    cumulative = 0.0
    for version, weight in items:
        cumulative += weight
        if point < cumulative:
            return version
    return items[-1][0]


# --- the cached fetch ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LabelTarget:
    """What a label (or the default) resolves to: one version, or a split between versions."""

    label: str | None
    version: int
    split: dict[str, float] | None
    versions: dict[int, PromptVersion]


def _load_target(name: str, version: int | None, label: str | None) -> _LabelTarget:
    prompt = Prompt.objects.filter(name=name).first()
    if prompt is None:
        raise not_found(f"No prompt named '{name}'.", name=name)
    if version is not None:
        return _LabelTarget(None, version, None, {version: version_record(prompt=prompt, version=version)})
    if label is None or label == LATEST:
        row = None if label == LATEST else prompt.labels.filter(name=PRODUCTION).first()
        if row is None:  # no production label yet: serve the latest version
            resolved_label = LATEST if label == LATEST else None
            return _LabelTarget(
                resolved_label,
                prompt.version,
                None,
                {prompt.version: version_record(prompt=prompt, version=prompt.version)},
            )
    else:
        row = prompt.labels.filter(name=label).first()
        if row is None:
            raise not_found(f"Prompt '{name}' has no label '{label}'.", name=name, label=label)
    split = row.split or None
    wanted = {row.version} | ({int(v) for v in split} if split else set())
    versions = {v: version_record(prompt=prompt, version=v) for v in sorted(wanted)}
    return _LabelTarget(row.name, row.version, split, versions)


def _target_to_cache(target: _LabelTarget) -> dict[str, Any]:
    return {
        "label": target.label,
        "version": target.version,
        "split": target.split,
        "versions": {v: pv.to_cache() for v, pv in target.versions.items()},
    }


def _target_from_cache(data: dict[str, Any]) -> _LabelTarget:
    return _LabelTarget(
        data["label"],
        data["version"],
        data["split"],
        {int(v): PromptVersion(**pv) for v, pv in data["versions"].items()},
    )


def _resolve(name: str, version: int | None, label: str | None, *, cached_only: bool = False) -> _LabelTarget | None:
    ref = f"v:{version}" if version is not None else f"l:{label or ''}"
    if prompt_cache.uncommitted(name):
        if cached_only:
            return None
        target = _load_target(name, version, label)
        compiled = {v: replace(pv.with_compiled(), label=target.label) for v, pv in target.versions.items()}
        return replace(target, versions=compiled)
    target = prompt_cache.local_recent(name, ref)
    if target is not None:
        return target
    stamp = prompt_cache.current_stamp(name)
    target = prompt_cache.local_get(name, ref, stamp)
    if target is not None:
        return target
    data = prompt_cache.shared_get(name, ref, stamp)
    if data is None and cached_only:
        return None
    if data is None:
        target = _load_target(name, version, label)
        prompt_cache.shared_put(name, ref, stamp, _target_to_cache(target))
    else:
        target = _target_from_cache(data)
    compiled = {v: pv.with_compiled() for v, pv in target.versions.items()}
    target = replace(target, versions={v: replace(pv, label=target.label) for v, pv in compiled.items()})
    prompt_cache.local_put(name, ref, stamp, target)
    return target


def get_prompt(
    *,
    name: str,
    version: int | None = None,
    label: str | None = None,
    stickiness_key: str | None = None,
    user=None,
    readers: PromptReaders | None = None,
) -> PromptVersion:
    """The version to serve for `name`, from the cache.

    - `version=N`: that version; `label="x"`: what label x points at (`latest`: the newest version);
    - neither: the `production` label, or the latest version while the prompt has no `production` label.
    - A label with a live A/B `split` picks one of its versions by a stable hash of `stickiness_key` (default: the
      current Caller's conversation, session, user or run id); the result carries `ab_variant="v<N>"`.

    Raises `PROMPT_NOT_FOUND` (404) for an unknown name, version or label, and for a prompt that `user` (the API's
    caller) or any of `readers` (the people an agent run or experiment acts for) may not read — checked first, with
    the same message as a missing prompt. Only the platform's own callers (demo loader, commands) pass neither.
    """
    if version is not None and label is not None:
        raise PlatformError("Give a version or a label, not both.", code="VALIDATION_ERROR", field="label")
    if user is not None or readers is not None:
        prompt_require_readable(name=name, user=user, readers=readers)
    target = _resolve(name, version, label)
    assert target is not None
    return _pick(name, target, stickiness_key)


def get_prompt_cached(
    *, name: str, version: int | None = None, label: str | None = None, stickiness_key: str | None = None
) -> PromptVersion | None:
    """`get_prompt` from the caches only (no database; safe in async code), or None on a miss."""
    if version is not None and label is not None:
        raise PlatformError("Give a version or a label, not both.", code="VALIDATION_ERROR", field="label")
    target = _resolve(name, version, label, cached_only=True)
    return None if target is None else _pick(name, target, stickiness_key)


def _pick(name: str, target: _LabelTarget, stickiness_key: str | None) -> PromptVersion:
    """The label's version, or with a live split, one of its versions by a stable hash of the stickiness key."""
    if not target.split:
        return target.versions[target.version]
    key = stickiness_key if stickiness_key is not None else stickiness_key_from_caller()
    chosen = assign_variant(split=target.split, key=key, salt=f"{name}:{target.label}")
    return replace(target.versions[chosen], ab_variant=f"v{chosen}")


def get_prompt_at(*, name: str, label: str | None, when: datetime, user=None) -> PromptVersion:
    """What `label` served at `when` (point in time). `latest` / no label: the newest version saved by then
    (for no label: production if it existed then, else latest, as `get_prompt` does)."""
    prompt = prompt_by_name(name=name, user=user)
    history = _history(prompt).filter(history_date__lte=when)
    wanted = label or PRODUCTION
    if wanted != LATEST:
        move = prompt.label_moves.filter(label=wanted, moved_at__lte=when).order_by("-moved_at", "-id").first()
        if move is not None and move.to_version is not None:
            return replace(version_record(prompt=prompt, version=move.to_version), label=wanted)
        if label is not None:
            raise not_found(f"Prompt '{name}' had no label '{label}' at {when.isoformat()}.", name=name, label=label)
    record = history.order_by("-version", "-history_id").first()
    if record is None:
        raise not_found(f"Prompt '{name}' had no version at {when.isoformat()}.", name=name)
    return replace(_version_from_history(record), label=LATEST if label == LATEST else None)


# --- diff ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionDiff:
    name: str
    from_version: int
    to_version: int
    changed_fields: list[str]
    unified: str  # the whole diff, readable
    text: str  # text prompts: unified diff of the template
    messages: list[dict[str, Any]]  # chat prompts: per message {index, role_from, role_to, status, diff}
    fields: dict[str, dict[str, Any]]  # other changed fields: {field: {"from": ..., "to": ...}}


def _lines(value: str) -> list[str]:
    return (value or "").splitlines(keepends=True) or []


def _udiff(a: str, b: str, from_name: str, to_name: str) -> str:
    out = difflib.unified_diff(_lines(a), _lines(b), fromfile=from_name, tofile=to_name, lineterm="")
    text = []
    for line in out:
        text.append(line if line.endswith("\n") else line + "\n")
    return "".join(text)


def compare_versions(*, name: str, v1: int, v2: int, user=None) -> VersionDiff:
    """A readable diff from v1 to v2: the template line by line (per message for chat prompts) and other fields."""
    prompt = prompt_by_name(name=name, user=user)
    a, b = version_record(prompt=prompt, version=v1), version_record(prompt=prompt, version=v2)
    changed = [f for f in CONTENT_FIELDS if getattr(a, f) != getattr(b, f)]
    parts: list[str] = []
    text_diff = ""
    if a.text != b.text:
        text_diff = _udiff(a.text, b.text, f"{name} v{v1} text", f"{name} v{v2} text")
        parts.append(text_diff)
    message_diffs: list[dict[str, Any]] = []
    for index in range(max(len(a.messages), len(b.messages))):
        old = a.messages[index] if index < len(a.messages) else None
        new = b.messages[index] if index < len(b.messages) else None
        if old == new:
            continue
        status = "added" if old is None else "removed" if new is None else "changed"
        old_role, new_role = (old or {}).get("role"), (new or {}).get("role")
        diff = _udiff(
            (old or {}).get("content", ""),
            (new or {}).get("content", ""),
            f"{name} v{v1} messages[{index}] ({old_role or '-'})",
            f"{name} v{v2} messages[{index}] ({new_role or '-'})",
        )
        if old_role != new_role and old is not None and new is not None:
            diff = f"@@ messages[{index}] role: {old_role} -> {new_role}\n" + diff
        message_diffs.append(
            {"index": index, "status": status, "role_from": old_role, "role_to": new_role, "diff": diff}
        )
        parts.append(diff or f"@@ messages[{index}] {status}\n")
    other: dict[str, dict[str, Any]] = {}
    for f in changed:
        if f in ("text", "messages"):
            continue
        other[f] = {"from": getattr(a, f), "to": getattr(b, f)}
        parts.append(
            f"@@ {f}\n-{json.dumps(getattr(a, f), sort_keys=True, default=str)}\n"
            f"+{json.dumps(getattr(b, f), sort_keys=True, default=str)}\n"
        )
    return VersionDiff(
        name=name,
        from_version=v1,
        to_version=v2,
        changed_fields=changed,
        unified="".join(parts),
        text=text_diff,
        messages=message_diffs,
        fields=other,
    )
