"""The demo prompts that `load_demo` creates, read from prompts/fixtures/demo_prompts.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from prompts.models import Prompt
from prompts.services.labels import label_move
from prompts.services.versions import prompt_create, prompt_update

DEMO_PROMPTS_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "demo_prompts.yaml"


def demo_prompt_specs() -> list[dict[str, Any]]:
    return yaml.safe_load(DEMO_PROMPTS_FILE.read_text(encoding="utf-8"))["prompts"]


@transaction.atomic
def demo_prompts_load() -> list[Prompt]:
    """Create the demo prompts (idempotent: existing ones are left as they are), then each one's `revisions`: a
    new version per revision, with the labels it lists moved to it."""
    prompts = []
    for spec in demo_prompt_specs():
        labels = spec.pop("labels", [])
        revisions = spec.pop("revisions", [])
        existing = Prompt.objects.filter(name=spec["name"]).first()
        if existing is not None:
            prompts.append(existing)
            continue
        prompt = prompt_create(**spec, labels=labels, change_note="Demo content")
        for revision in revisions:
            revision_labels = revision.pop("labels", [])
            prompt = prompt_update(name=prompt.name, **revision)
            for label in revision_labels:
                label_move(name=prompt.name, label=label, version=prompt.version, note=revision["change_note"])
        prompts.append(prompt)
    return prompts
