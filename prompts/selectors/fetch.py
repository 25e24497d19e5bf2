"""The cached fetch: a prompt by label or version, as it is now or was at a point in time."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError
from prompts import cache as prompt_cache
from prompts.models import Prompt
from prompts.selectors.access import PromptReaders, not_found, prompt_by_name, prompt_require_readable
from prompts.selectors.variants import assign_variant, stickiness_key_from_caller
from prompts.selectors.versions import (
    LATEST,
    PRODUCTION,
    PromptVersion,
    prompt_history,
    version_from_history,
    version_record,
)


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
    target: _LabelTarget | None
    if prompt_cache.uncommitted(name):
        if cached_only:
            return None
        loaded = _load_target(name, version, label)
        compiled = {v: replace(pv.with_compiled(), label=loaded.label) for v, pv in loaded.versions.items()}
        return replace(loaded, versions=compiled)
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
    user: Actor = None,
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


def get_prompt_at(*, name: str, label: str | None, when: datetime, user: Actor = None) -> PromptVersion:
    """What `label` served at `when` (point in time). `latest` / no label: the newest version saved by then
    (for no label: production if it existed then, else latest, as `get_prompt` does)."""
    prompt = prompt_by_name(name=name, user=user)
    history = prompt_history(prompt).filter(history_date__lte=when)
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
    return replace(version_from_history(record), label=LATEST if label == LATEST else None)
