"""Writes of the prompt store (and the render service the rest of the platform calls).

Every write validates first and writes nothing on error, and invalidates the fetch cache (`prompts.cache`).
Who may read and write a prompt is decided by one rule, in `prompts.selectors` (`prompt_readable_by`,
`prompt_writable_by`): every write here checks it — a prompt the user may not read is PROMPT_NOT_FOUND (404), one
they may read but not change is POLICY_DENIED (403). `user=None` means the platform itself (demo loader, imports
run by a command): access checks are skipped, approval requirements are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import Caller, bind_caller
from prompts import cache as prompt_cache
from prompts import conf
from prompts.models import (
    LABEL_NAME_PATTERN,
    PROMPT_NAME_PATTERN,
    LabelMove,
    Prompt,
    PromptLabel,
    PromptReview,
)
from prompts.rendering import (
    VARIABLE_TYPES,
    RenderBudget,
    RenderLimits,
    bind_variables,
    compile_template,
    default_limits,
    inspect_template,
    render_source,
    type_matches,
)
from prompts.selectors import (
    CONTENT_FIELDS,
    LATEST,
    PromptReaders,
    PromptVersion,
    get_prompt,
    get_prompt_cached,
    not_found,
    prompt_by_name,
    prompt_writable_by,
    team_usable_by,
    version_exists,
    version_is_approved,
    version_record,
)

RESERVED_NAMES = frozenset({"export", "import"})
CHAT_ROLES = ("system", "user", "assistant", "tool", "developer")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_TEMPLATE_CHARS = 200_000


def protected_by_default() -> frozenset[str]:
    return frozenset(conf.get("PROMPT_PROTECTED_LABELS"))


def _invalid(message: str, field: str, **details: Any) -> PlatformError:
    return PlatformError(message, code="VALIDATION_ERROR", field=field, details=details)


# --- validation (used by the services, the admin form and the API alike) ------------------------------------------


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not re.match(PROMPT_NAME_PATTERN, name):
        raise _invalid(
            "name: use 1-100 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.", "name"
        )
    if name in RESERVED_NAMES:
        raise _invalid(f"name: '{name}' is reserved.", "name")
    return name


def _validate_variables_schema(variables: Any) -> list[dict[str, Any]]:
    if not isinstance(variables, list):
        raise _invalid("variables must be a list of {name, type, required, default}.", "variables")
    seen: set[str] = set()
    normalized = []
    for i, spec in enumerate(variables):
        where = f"variables[{i}]"
        if not isinstance(spec, dict):
            raise _invalid(f"{where} must be an object.", where)
        unknown = set(spec) - {"name", "type", "required", "default", "description"}
        if unknown:
            raise _invalid(f"{where} has unknown keys: {', '.join(sorted(unknown))}.", where)
        name = spec.get("name")
        if not isinstance(name, str) or not _VARIABLE_NAME.match(name):
            raise _invalid(f"{where}.name must be an identifier (letters, digits, _).", f"{where}.name")
        if name in seen:
            raise _invalid(f"{where}.name '{name}' is declared twice.", f"{where}.name")
        seen.add(name)
        kind = spec.get("type", "string")
        if kind not in VARIABLE_TYPES:
            raise _invalid(f"{where}.type must be one of {', '.join(VARIABLE_TYPES)}.", f"{where}.type")
        required = spec.get("required", True)
        if not isinstance(required, bool):
            raise _invalid(f"{where}.required must be true or false.", f"{where}.required")
        entry: dict[str, Any] = {"name": name, "type": kind, "required": required}
        if spec.get("default") is not None:
            if not type_matches(kind, spec["default"]):
                raise _invalid(f"{where}.default must be of type {kind}.", f"{where}.default")
            entry["default"] = spec["default"]
        description = spec.get("description")
        if description:
            if not isinstance(description, str):
                raise _invalid(f"{where}.description must be a string.", f"{where}.description")
            entry["description"] = description
        normalized.append(entry)
    return normalized


MAX_MESSAGES = 100


def _validate_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages: a chat prompt needs a non-empty list of {role, content}.", "messages")
    if len(messages) > MAX_MESSAGES:
        raise _invalid(f"messages: at most {MAX_MESSAGES} messages.", "messages")
    normalized = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or set(message) - {"role", "content"}:
            raise _invalid(f"{where} must be an object with 'role' and 'content' only.", where)
        if message.get("role") not in CHAT_ROLES:
            raise _invalid(f"{where}.role must be one of {', '.join(CHAT_ROLES)}.", f"{where}.role")
        if not isinstance(message.get("content"), str):
            raise _invalid(f"{where}.content must be a string.", f"{where}.content")
        normalized.append({"role": message["role"], "content": message["content"]})
    return normalized


def validate_content(
    *,
    template_type: str,
    text: str,
    messages: Any,
    variables: Any,
    variables_given: bool = True,
) -> dict[str, Any]:
    """Check a version's content; return it normalized. Compiles every template (syntax → PROMPT_TEMPLATE_INVALID
    with line/column/message_index) and checks that each variable the templates use is declared. Without an
    explicit schema (`variables_given=False`), undeclared variables are added as required strings."""
    if template_type not in Prompt.TemplateType.values:
        raise _invalid("template_type must be 'text' or 'chat'.", "template_type")
    if not isinstance(text, str):
        raise _invalid("text must be a string.", "text")
    schema = _validate_variables_schema(variables if variables is not None else [])
    sources: list[tuple[str, dict[str, Any]]]
    if template_type == Prompt.TemplateType.CHAT:
        messages = _validate_messages(messages)
        text = ""
        sources = [(m["content"], {"message_index": i, "role": m["role"]}) for i, m in enumerate(messages)]
    else:
        if not text.strip():
            raise _invalid("text: a text prompt needs a template.", "text")
        messages = []
        sources = [(text, {})]
    if sum(len(s) for s, _ in sources) > MAX_TEMPLATE_CHARS:
        raise _invalid(f"The template is longer than {MAX_TEMPLATE_CHARS} characters.", "text")
    used: dict[str, str] = {}
    for source, where in sources:
        compile_template(source, where=where)
        for name, kind in inspect_template(source, where=where).items():
            used.setdefault(name, kind)
    declared = {spec["name"] for spec in schema}
    for name, kind in used.items():
        if name in declared:
            continue
        if variables_given:
            raise PlatformError(
                f"The template uses variable '{name}', which is not declared in the variables schema.",
                code="PROMPT_VARIABLE_MISSING",
                field="variables",
                details={"variable": name},
            )
        schema.append({"name": name, "type": kind, "required": True})
    return {"template_type": template_type, "text": text, "messages": messages, "variables": schema}


def _validate_meta(
    *, tags: Any, params: Any, model_endpoint: Any, description: Any, requires_approval: Any
) -> dict[str, Any]:
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 50 for t in tags):
        raise _invalid("tags must be a list of strings of 1-50 characters.", "tags")
    if not isinstance(params, dict):
        raise _invalid("params must be an object.", "params")
    if not isinstance(model_endpoint, str) or len(model_endpoint) > 200:
        raise _invalid("model_endpoint must be a string of at most 200 characters.", "model_endpoint")
    if not isinstance(description, str):
        raise _invalid("description must be a string.", "description")
    if not isinstance(requires_approval, bool):
        raise _invalid("requires_approval must be true or false.", "requires_approval")
    return {
        "tags": list(dict.fromkeys(tags)),
        "params": params,
        "model_endpoint": model_endpoint,
        "description": description,
        "requires_approval": requires_approval,
    }


# --- prompts ------------------------------------------------------------------------------------------------------


def _save_version(prompt: Prompt, *, user, change_note: str) -> Prompt:
    prompt.version += 1
    prompt._change_reason = change_note or ""
    prompt._history_user = user
    prompt.save()
    prompt_cache.invalidate(prompt.name)
    return prompt


def _user_or_none(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def _prompt_for_write(*, name: str, user, action: str) -> Prompt:
    """The prompt `name` if `user` may change it: PROMPT_NOT_FOUND when they may not even read it (no hint that it
    exists), POLICY_DENIED when they may read but not change it."""
    prompt = prompt_by_name(name=name, user=user)
    _require_writable(prompt=prompt, user=user, action=action)
    return prompt


def _require_writable(*, prompt: Prompt, user, action: str) -> None:
    if not prompt_writable_by(prompt=prompt, user=user):
        raise PlatformError(
            f"You may not {action} prompt '{prompt.name}': only its owner"
            f"{', members of its team' if prompt.team_id else ''} and staff may change it.",
            code="POLICY_DENIED",
            details={"name": prompt.name},
        )


def _require_team_usable(*, team, user) -> None:
    if not team_usable_by(team=team, user=user):
        raise PlatformError("team: you are not a member of this team.", code="POLICY_DENIED", field="team")


@transaction.atomic
def prompt_create(
    *,
    name: str,
    template_type: str = Prompt.TemplateType.TEXT,
    text: str = "",
    messages: list[dict[str, str]] | None = None,
    variables: list[dict[str, Any]] | None = None,
    description: str = "",
    tags: list[str] | None = None,
    model_endpoint: str = "",
    params: dict[str, Any] | None = None,
    requires_approval: bool = False,
    team=None,
    user=None,
    change_note: str = "Created",
    labels: list[str] | None = None,
) -> Prompt:
    """Create a prompt and its version 1 (optionally pointing `labels` at it)."""
    validate_name(name)
    content = validate_content(
        template_type=template_type,
        text=text,
        messages=messages,
        variables=variables,
        variables_given=variables is not None,
    )
    meta = _validate_meta(
        tags=tags if tags is not None else [],
        params=params if params is not None else {},
        model_endpoint=model_endpoint,
        description=description,
        requires_approval=requires_approval,
    )
    if user is not None and not user.is_authenticated:
        raise PlatformError("Creating a prompt needs a signed-in user.", code="POLICY_DENIED")
    _require_team_usable(team=team, user=user)
    if Prompt.objects.filter(name=name).exists():
        raise PlatformError(f"A prompt named '{name}' already exists.", code="CONFLICT", field="name")
    prompt = Prompt(name=name, team=team, created_by=_user_or_none(user), **content, **meta)
    try:
        with transaction.atomic():
            _save_version(prompt, user=_user_or_none(user), change_note=change_note)
    except IntegrityError:
        raise PlatformError(f"A prompt named '{name}' already exists.", code="CONFLICT", field="name") from None
    for label in labels or []:
        label_move(name=name, label=label, version=prompt.version, user=user, note="Set at creation")
    return prompt


@transaction.atomic
def prompt_update(
    *, name: str, user=None, change_note: str = "", force_new_version: bool = False, **changes: Any
) -> Prompt:
    """Save a new version with `changes` (any of the content fields). Unchanged content saves nothing, unless
    `force_new_version` (rollback)."""
    unknown = set(changes) - set(CONTENT_FIELDS) - {"team"}
    if unknown:
        raise _invalid(f"Unknown or read-only fields: {', '.join(sorted(unknown))}.", sorted(unknown)[0])
    if "variables" in changes and changes["variables"] is None:
        del changes["variables"]  # null: keep the schema, add what the template newly uses
    prompt = prompt_by_name(name=name, user=user)
    prompt = Prompt.objects.select_for_update().get(pk=prompt.pk)
    merged = {f: getattr(prompt, f) for f in CONTENT_FIELDS}
    merged.update({k: v for k, v in changes.items() if k != "team"})
    content = validate_content(
        template_type=merged["template_type"],
        text=merged["text"],
        messages=merged["messages"],
        variables=merged["variables"],
        variables_given="variables" in changes,
    )
    meta = _validate_meta(
        tags=merged["tags"],
        params=merged["params"],
        model_endpoint=merged["model_endpoint"],
        description=merged["description"],
        requires_approval=merged["requires_approval"],
    )
    new_values = {**content, **meta}
    changed = {k: v for k, v in new_values.items() if getattr(prompt, k) != v}
    if "team" in changes and changes["team"] != prompt.team:
        changed["team"] = changes["team"]
    if not changed and not force_new_version:
        return prompt  # nothing is written, so nothing to allow (re-importing an unchanged export of shared prompts)
    _require_writable(prompt=prompt, user=user, action="change")  # as the prompt is now, before any change
    if "team" in changed:
        _require_team_usable(team=changed["team"], user=user)
        prompt.team = changed["team"]
    for key, value in new_values.items():
        setattr(prompt, key, value)
    return _save_version(prompt, user=_user_or_none(user), change_note=change_note)


@transaction.atomic
def prompt_rollback(*, name: str, version: int, user=None, change_note: str = "") -> Prompt:
    """A NEW version whose content equals `version`'s. History is never rewritten."""
    prompt = _prompt_for_write(name=name, user=user, action="roll back")
    old = version_record(prompt=prompt, version=version)
    return prompt_update(
        name=name,
        user=user,
        change_note=change_note or f"Rollback to v{version}",
        force_new_version=True,
        **old.content(),
    )


@transaction.atomic
def prompt_delete(*, name: str, user=None) -> None:
    """Delete a prompt with its labels and reviews; its version history stays in the historical table."""
    prompt = _prompt_for_write(name=name, user=user, action="delete")
    prompt._history_user = _user_or_none(user)
    prompt._change_reason = "Deleted"
    prompt.delete()
    prompt_cache.invalidate(name)


# --- labels ------------------------------------------------------------------------------------------------------


def _may_move_protected(user) -> bool:
    return user is None or user.has_perm("prompts.move_protected_label")


def _validate_split(prompt: Prompt, split: Any) -> dict[str, float] | None:
    if split in (None, {}):
        return None
    if not isinstance(split, dict):
        raise _invalid('split must be an object {"<version>": weight}.', "split")
    normalized: dict[str, float] = {}
    for key, weight in split.items():
        try:
            version = int(key)
        except (TypeError, ValueError):
            raise _invalid(f"split: '{key}' is not a version number.", "split") from None
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise _invalid(f"split: the weight of v{version} must be a number >= 0.", "split")
        if not version_exists(prompt=prompt, version=version):
            raise not_found(f"Prompt '{prompt.name}' has no version {version}.", name=prompt.name, version=version)
        normalized[str(version)] = weight
    if sum(normalized.values()) <= 0:
        raise _invalid("split: at least one weight must be positive.", "split")
    return normalized


def _require_protected_permission(*, prompt: Prompt, label: str, user) -> None:
    if not _may_move_protected(user):
        raise PlatformError(
            f"Label '{label}' of prompt '{prompt.name}' is protected; moving it needs the permission "
            "'prompts.move_protected_label'.",
            code="LABEL_PROTECTED",
            field="label",
            details={"label": label},
        )


def _require_approval(*, prompt: Prompt, label: str, versions: set[int]) -> None:
    if not prompt.requires_approval:
        return
    missing = sorted(v for v in versions if not version_is_approved(prompt=prompt, version=v))
    if missing:
        raise PlatformError(
            f"Prompt '{prompt.name}' requires approval: version {missing[0]} has no approved review.",
            code="APPROVAL_REQUIRED",
            field="version",
            details={"label": label, "versions": missing},
        )


@transaction.atomic
def label_move(
    *,
    name: str,
    label: str,
    version: int,
    user=None,
    note: str = "",
    protected: bool | None = None,
    split: dict[str, float] | None = None,
) -> PromptLabel:
    """Point `label` at `version` (creating the label), optionally with a live A/B `split` {version: weight}.

    A protected label (`production` is protected when created, see PROMPT_PROTECTED_LABELS) needs the permission
    `prompts.move_protected_label` (`LABEL_PROTECTED`, 403), and where the prompt `requires_approval`, an approved
    review of the target version and of every version in the split (`APPROVAL_REQUIRED`, 409). Changing `protected`
    itself needs the permission too. Every change is recorded as a `LabelMove` (who, when).
    """
    if not isinstance(label, str) or not re.match(LABEL_NAME_PATTERN, label):
        raise _invalid("label: use 1-50 lowercase letters, digits, '.', '_' or '-'.", "label")
    if label == LATEST:
        raise _invalid("label: 'latest' always follows the newest version and cannot be moved.", "label")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _invalid("version must be an integer.", "version")
    prompt = _prompt_for_write(name=name, user=user, action="move a label of")
    prompt = Prompt.objects.select_for_update().get(pk=prompt.pk)
    if not version_exists(prompt=prompt, version=version):
        raise not_found(f"Prompt '{name}' has no version {version}.", name=name, version=version)
    split = _validate_split(prompt, split)
    row = PromptLabel.objects.select_for_update().filter(prompt=prompt, name=label).first()
    was_protected = row.protected if row is not None else label in protected_by_default()
    will_be_protected = was_protected if protected is None else protected
    if was_protected or will_be_protected:
        _require_protected_permission(prompt=prompt, label=label, user=user)
    if will_be_protected:
        targets = {version} | ({int(v) for v, w in split.items() if w > 0} if split else set())
        _require_approval(prompt=prompt, label=label, versions=targets)
    if (
        row is not None
        and row.version == version
        and (row.split or None) == split
        and row.protected == will_be_protected
    ):
        return row
    from_version = row.version if row is not None else None
    if row is None:
        row = PromptLabel(prompt=prompt, name=label)
    row.version, row.split, row.protected, row.updated_by = version, split, will_be_protected, _user_or_none(user)
    row.save()
    LabelMove.objects.create(
        prompt=prompt,
        label=label,
        from_version=from_version,
        to_version=version,
        split=split,
        moved_by=_user_or_none(user),
        moved_at=timezone.now(),
        note=note,
    )
    prompt_cache.invalidate(prompt.name)
    return row


def label_split_set(*, name: str, label: str, split: dict[str, float] | None, user=None, note: str = "") -> PromptLabel:
    """Set (or clear, with None) a live A/B split on an existing label, keeping its primary version. The same
    protection and approval rules as a move apply; every split change is recorded as a `LabelMove`."""
    prompt = _prompt_for_write(name=name, user=user, action="change a label of")
    row = prompt.labels.filter(name=label).first()
    if row is None:
        raise not_found(f"Prompt '{name}' has no label '{label}'.", name=name, label=label)
    return label_move(name=name, label=label, version=row.version, user=user, note=note, split=split or None)


@transaction.atomic
def label_delete(*, name: str, label: str, user=None, note: str = "") -> None:
    prompt = _prompt_for_write(name=name, user=user, action="delete a label of")
    row = PromptLabel.objects.select_for_update().filter(prompt=prompt, name=label).first()
    if row is None:
        raise not_found(f"Prompt '{name}' has no label '{label}'.", name=name, label=label)
    if row.protected:
        _require_protected_permission(prompt=prompt, label=label, user=user)
    LabelMove.objects.create(
        prompt=prompt,
        label=label,
        from_version=row.version,
        to_version=None,
        moved_by=_user_or_none(user),
        moved_at=timezone.now(),
        note=note,
    )
    row.delete()
    prompt_cache.invalidate(prompt.name)


# --- reviews ------------------------------------------------------------------------------------------------------


def _may_review(user) -> bool:
    return user is None or user.has_perm("prompts.review_prompt")


def _review_for(prompt: Prompt, version: int, states: tuple[str, ...]) -> PromptReview | None:
    return (
        PromptReview.objects.select_for_update()
        .filter(prompt=prompt, version=version, state__in=states)
        .order_by("-created_at", "-id")
        .first()
    )


@transaction.atomic
def review_create(*, name: str, version: int, user=None, note: str = "") -> PromptReview:
    """A draft review of `version` (submit it with `review_submit`)."""
    prompt = _prompt_for_write(name=name, user=user, action="request a review of")
    if not version_exists(prompt=prompt, version=version):
        raise not_found(f"Prompt '{name}' has no version {version}.", name=name, version=version)
    return PromptReview.objects.create(prompt=prompt, version=version, requested_by=_user_or_none(user), note=note)


@transaction.atomic
def review_submit(*, name: str, version: int, user=None, note: str = "") -> PromptReview:
    """draft → in_review (creating the review if there is no draft). Idempotent while in review."""
    prompt = _prompt_for_write(name=name, user=user, action="request a review of")
    if not version_exists(prompt=prompt, version=version):
        raise not_found(f"Prompt '{name}' has no version {version}.", name=name, version=version)
    existing = _review_for(prompt, version, (PromptReview.State.IN_REVIEW, PromptReview.State.APPROVED))
    if existing is not None:
        return existing
    review = _review_for(prompt, version, (PromptReview.State.DRAFT,))
    if review is None:
        review = PromptReview(prompt=prompt, version=version, requested_by=_user_or_none(user))
    review.state = PromptReview.State.IN_REVIEW
    if note:
        review.note = note
    review.save()
    return review


def _decide(*, name: str, version: int, user, note: str, state: str) -> PromptReview:
    if not _may_review(user):
        raise PlatformError(
            "Approving or rejecting a review needs the permission 'prompts.review_prompt'.", code="POLICY_DENIED"
        )
    prompt = prompt_by_name(name=name, user=user)  # a reviewer needs to read the prompt, not to own it
    review = _review_for(prompt, version, (PromptReview.State.IN_REVIEW,))
    if review is None:
        raise PlatformError(
            f"Version {version} of '{name}' has no review in review; submit it first.",
            code="CONFLICT",
            field="version",
            details={"version": version},
        )
    reviewer = _user_or_none(user)
    if state == PromptReview.State.APPROVED and reviewer is not None and review.requested_by_id == reviewer.pk:
        # Four eyes: the person who asked for the review cannot be the one who approves it.
        raise PlatformError(
            "A review must be approved by someone other than the person who submitted it.",
            code="POLICY_DENIED",
            field="version",
        )
    review.state = state
    review.reviewed_by = reviewer
    review.decision_note = note
    review.decided_at = timezone.now()
    review.save()
    return review


@transaction.atomic
def review_approve(*, name: str, version: int, user=None, note: str = "") -> PromptReview:
    """in_review → approved (needs `prompts.review_prompt`)."""
    return _decide(name=name, version=version, user=user, note=note, state=PromptReview.State.APPROVED)


@transaction.atomic
def review_reject(*, name: str, version: int, user=None, note: str = "") -> PromptReview:
    """in_review → rejected (needs `prompts.review_prompt`)."""
    return _decide(name=name, version=version, user=user, note=note, state=PromptReview.State.REJECTED)


# --- rendering ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedPrompt:
    name: str
    version: int
    label: str | None
    template_type: str
    text: str | None
    messages: list[dict[str, str]] | None
    model_endpoint: str
    params: dict[str, Any]
    ab_variant: str | None = None

    def caller_fields(self) -> dict[str, Any]:
        return {"prompt_name": self.name, "prompt_version": self.version, "ab_variant": self.ab_variant}


def render_version(
    prompt_version: PromptVersion, variables: dict[str, Any] | None, *, limits: RenderLimits | None = None
) -> RenderedPrompt:
    """Render one version with `variables` (checked against its schema)."""
    pv = prompt_version.with_compiled()
    context = bind_variables(pv.variables, variables)
    templates = pv.compiled or ()
    budget = RenderBudget(limits or default_limits())
    if pv.template_type == Prompt.TemplateType.CHAT:
        messages = [
            {
                "role": m["role"],
                "content": render_source(
                    m["content"], context, where={"message_index": i}, template=templates[i], budget=budget
                ),
            }
            for i, m in enumerate(pv.messages)
        ]
        text = None
    else:
        text = render_source(pv.text, context, template=templates[0], budget=budget)
        messages = None
    return RenderedPrompt(
        name=pv.name,
        version=pv.version,
        label=pv.label,
        template_type=pv.template_type,
        text=text,
        messages=messages,
        model_endpoint=pv.model_endpoint,
        params=dict(pv.params),
        ab_variant=pv.ab_variant,
    )


def render_prompt(
    name: str,
    variables: dict[str, Any] | None = None,
    *,
    label: str | None = None,
    version: int | None = None,
    stickiness_key: str | None = None,
    user=None,
    readers: PromptReaders | None = None,
) -> RenderedPrompt:
    """Fetch (cached; default: the production label, else latest) and render. Agents and experiments call this,
    then bind the result to the Caller (`use_prompt`) around their LLM call, so the span records name and version.

    Whoever will see the result must be allowed to read the prompt: the API passes its caller (`user`), an agent
    run or experiment the people it acts for (`readers`); otherwise PROMPT_NOT_FOUND, before anything is rendered
    (so a failed render never names the variables of a prompt the caller may not read)."""
    pv = get_prompt(name=name, version=version, label=label, stickiness_key=stickiness_key, user=user, readers=readers)
    return render_version(pv, variables)


def render_preview(
    *,
    template_type: str,
    text: str = "",
    messages: list[dict[str, str]] | None = None,
    variables_schema: list[dict[str, Any]] | None = None,
    variables: dict[str, Any] | None = None,
    name: str = "preview",
) -> RenderedPrompt:
    """Render unsaved content (admin preview): validated exactly like a save, never stored."""
    content = validate_content(
        template_type=template_type,
        text=text,
        messages=messages,
        variables=variables_schema,
        variables_given=variables_schema is not None,
    )
    pv = PromptVersion(
        name=name,
        version=0,
        template_type=content["template_type"],
        text=content["text"],
        messages=content["messages"],
        variables=content["variables"],
        model_endpoint="",
        params={},
    )
    return render_version(pv, variables)


async def arender_prompt(
    name: str,
    variables: dict[str, Any] | None = None,
    *,
    label: str | None = None,
    version: int | None = None,
    stickiness_key: str | None = None,
    user=None,
    readers: PromptReaders | None = None,
) -> RenderedPrompt:
    """`render_prompt` for async callers: served straight from the cache when warm; a miss (database) runs in a
    worker thread. With a `user` or `readers` the access check reads the database, so it runs there too. The render
    itself always runs in a worker thread (of the shared pool, not the one thread that serializes database work): it
    may take up to PROMPT_RENDER_TIMEOUT_MS, and the event loop keeps serving other requests meanwhile."""
    from asgiref.sync import sync_to_async

    checked = user is not None or readers is not None
    pv = None if checked else get_prompt_cached(name=name, version=version, label=label, stickiness_key=stickiness_key)
    if pv is None:
        pv = await sync_to_async(get_prompt, thread_sensitive=True)(
            name=name, version=version, label=label, stickiness_key=stickiness_key, user=user, readers=readers
        )
    return await sync_to_async(render_version, thread_sensitive=False)(pv, variables)


@contextmanager
def use_prompt(rendered: RenderedPrompt) -> Iterator[Caller]:
    """Bind the prompt's name, version and A/B variant to the Caller, so every LLM span inside records them:

    rendered = render_prompt("assistant-system", {"user_name": "Ada"})
    with use_prompt(rendered):
        llm.complete(...)
    """
    with bind_caller(**rendered.caller_fields()) as caller:
        yield caller


# --- export / import --------------------------------------------------------------------------------------------


def prompt_export_data(prompt: Prompt) -> dict[str, Any]:
    labels = sorted(label.name for label in prompt.labels.all() if label.version == prompt.version)
    return {
        "name": prompt.name,
        "description": prompt.description,
        "tags": prompt.tags,
        "template_type": prompt.template_type,
        "text": prompt.text if prompt.template_type == Prompt.TemplateType.TEXT else "",
        "messages": prompt.messages if prompt.template_type == Prompt.TemplateType.CHAT else [],
        "variables": prompt.variables,
        "model_endpoint": prompt.model_endpoint,
        "params": prompt.params,
        "requires_approval": prompt.requires_approval,
        "version": prompt.version,
        "labels": labels,
    }


@dataclass(frozen=True)
class ImportResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


@transaction.atomic
def prompts_import(*, data: Any, user=None, change_note: str = "Imported") -> ImportResult:
    """Create or update prompts from an export document ({"prompts": [...]} or a list). All or nothing: the first
    invalid prompt aborts the import with its index in the error. Labels listed in an item are pointed at the
    imported version (subject to protection and approval)."""
    items = data.get("prompts") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise _invalid('The document must be {"prompts": [...]} or a list of prompts.', "prompts")
    created, updated, unchanged = [], [], []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise _invalid("Each prompt must be an object.", "prompts")
            name = validate_name(item.get("name"))
            content = {f: item[f] for f in CONTENT_FIELDS if f in item}
            labels = item.get("labels") or []
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise _invalid("labels must be a list of label names.", "labels")
            existing = Prompt.objects.filter(name=name).first()
            if existing is None:
                prompt = prompt_create(name=name, user=user, change_note=change_note, **content)
                created.append(name)
            else:
                before = existing.version
                prompt = prompt_update(name=name, user=user, change_note=change_note, **content)
                (updated if prompt.version != before else unchanged).append(name)
            for label in labels:
                label_move(name=name, label=label, version=prompt.version, user=user, note=change_note)
        except PlatformError as error:
            error.details = {**error.details, "index": index}
            error.message = f"prompts[{index}]: {error.message}"
            raise
    return ImportResult(created=created, updated=updated, unchanged=unchanged)


# --- demo content ---------------------------------------------------------------------------------------------------

DEMO_PROMPTS: list[dict[str, Any]] = [
    {
        "name": "assistant-system",
        "description": "System prompt of the demo assistant agent.",
        "tags": ["demo", "assistant"],
        "template_type": "chat",
        "messages": [
            {
                "role": "system",
                "content": "You are {{ assistant_name }}, a concise and friendly assistant for {{ company }}.\n"
                "Answer in {{ language }}. If you are not sure, say so.\n"
                "{% if tools %}You can use these tools: {{ tools | join(', ') }}.{% endif %}",
            },
            {"role": "user", "content": "{{ question }}"},
        ],
        "variables": [
            {"name": "assistant_name", "type": "string", "required": False, "default": "Ada"},
            {"name": "company", "type": "string", "required": False, "default": "Acme"},
            {"name": "language", "type": "string", "required": False, "default": "English"},
            {"name": "tools", "type": "list", "required": False, "default": []},
            {"name": "question", "type": "string", "required": True},
        ],
        "model_endpoint": "mock-chat",
        "params": {"temperature": 0.3, "max_tokens": 512},
        "labels": ["production", "staging"],
    },
    {
        "name": "summarize",
        "description": "Summarize a document in a given number of bullet points.",
        "tags": ["demo", "summarization"],
        "template_type": "text",
        "text": "Summarize the following {{ kind }} in at most {{ max_bullets }} bullet points.\n"
        "Keep names and numbers exact.\n\n---\n{{ document }}\n---",
        "variables": [
            {"name": "kind", "type": "string", "required": False, "default": "document"},
            {"name": "max_bullets", "type": "integer", "required": False, "default": 5},
            {"name": "document", "type": "string", "required": True},
        ],
        "model_endpoint": "mock-chat",
        "params": {"temperature": 0.0},
        "labels": ["production"],
    },
    {
        "name": "classify-ticket",
        "description": "Route a support ticket to a queue.",
        "tags": ["demo", "classification"],
        "template_type": "chat",
        "messages": [
            {
                "role": "system",
                "content": "Classify the support ticket into exactly one of: "
                "{% for q in queues %}{{ q }}{% if not loop.last %}, {% endif %}{% endfor %}. "
                "Reply with the queue name only.",
            },
            {"role": "user", "content": "Subject: {{ subject }}\n\n{{ body }}"},
        ],
        "variables": [
            {"name": "queues", "type": "list", "required": False, "default": ["billing", "technical", "account"]},
            {"name": "subject", "type": "string", "required": True},
            {"name": "body", "type": "string", "required": True},
        ],
        "model_endpoint": "mock-chat",
        "params": {"temperature": 0.0, "max_tokens": 10},
        "labels": ["staging"],
    },
]


@transaction.atomic
def demo_prompts_load() -> list[Prompt]:
    """Create the demo prompts (idempotent: existing ones are left as they are). The `summarize` prompt gets a
    second version so history, diff and rollback have something to show; production stays on v1."""
    prompts = []
    for spec in DEMO_PROMPTS:
        spec = dict(spec)
        labels = spec.pop("labels")
        existing = Prompt.objects.filter(name=spec["name"]).first()
        if existing is not None:
            prompts.append(existing)
            continue
        prompt = prompt_create(**spec, labels=labels, change_note="Demo content")
        if prompt.name == "summarize":
            prompt = prompt_update(
                name="summarize",
                text=spec["text"].replace("Keep names and numbers exact.", "Keep names, dates and numbers exact.")
                + "\nEnd with one line starting with 'TL;DR:'.",
                change_note="Ask for a TL;DR line",
            )
            label_move(name="summarize", label="staging", version=prompt.version, note="Try the TL;DR variant")
        prompts.append(prompt)
    return prompts
