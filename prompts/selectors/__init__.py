"""Reads of the prompt store, one module per concern; this package is what other apps import.

`get_prompt(name)` with neither a label nor a version serves the `production` label; when a prompt has no
`production` label yet it serves the latest version (so a prompt is usable from its first save; set `production`
to pin it). `latest` is computed (the newest version), never stored.
"""

from prompts.selectors.access import (
    PromptReaders,
    not_found,
    prompt_by_name,
    prompt_list,
    prompt_readable_by,
    prompt_require_readable,
    prompt_writable_by,
    prompts_readable_by_all,
    visible_prompts,
)
from prompts.selectors.diff import VersionDiff, compare_versions
from prompts.selectors.fetch import get_prompt, get_prompt_at, get_prompt_cached
from prompts.selectors.labels import LabelInfo, label_list, label_moves, review_list, version_is_approved
from prompts.selectors.rendering import (
    RenderedPrompt,
    arender_prompt,
    render_preview,
    render_prompt,
    render_version,
    use_prompt,
)
from prompts.selectors.variants import assign_variant, stickiness_key_from_caller
from prompts.selectors.versions import (
    CONTENT_FIELDS,
    LATEST,
    PRODUCTION,
    PromptVersion,
    list_versions,
    version_exists,
    version_record,
)

__all__ = [
    "CONTENT_FIELDS",
    "LATEST",
    "PRODUCTION",
    "LabelInfo",
    "PromptReaders",
    "PromptVersion",
    "RenderedPrompt",
    "VersionDiff",
    "arender_prompt",
    "assign_variant",
    "compare_versions",
    "get_prompt",
    "get_prompt_at",
    "get_prompt_cached",
    "label_list",
    "label_moves",
    "list_versions",
    "not_found",
    "prompt_by_name",
    "prompt_list",
    "prompt_readable_by",
    "prompt_require_readable",
    "prompt_writable_by",
    "prompts_readable_by_all",
    "render_preview",
    "render_prompt",
    "render_version",
    "review_list",
    "stickiness_key_from_caller",
    "use_prompt",
    "version_exists",
    "version_is_approved",
    "version_record",
    "visible_prompts",
]
