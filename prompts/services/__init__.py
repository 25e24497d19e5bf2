"""Writes of the prompt store, one module per concern; this package is what other apps import.

Every write validates first (`prompts.validation`) and writes nothing on error, and invalidates the fetch cache
(`prompts.cache`). Who may read and write a prompt is decided by one rule, in `prompts.selectors.access`
(`prompt_readable_by`, `prompt_writable_by`): every write checks it (`prompts.services.access`) — a prompt the user
may not read is PROMPT_NOT_FOUND (404), one they may read but not change is POLICY_DENIED (403). `user=None` means
the platform itself (demo loader, imports run by a command): access checks are skipped, approval requirements are not.
"""

from prompts.services.demo import demo_prompts_load
from prompts.services.labels import label_delete, label_move, label_split_set, protected_by_default
from prompts.services.reviews import review_approve, review_create, review_reject, review_submit
from prompts.services.transfer import ImportResult, prompt_export_data, prompts_import
from prompts.services.versions import prompt_create, prompt_delete, prompt_rollback, prompt_update

__all__ = [
    "ImportResult",
    "demo_prompts_load",
    "label_delete",
    "label_move",
    "label_split_set",
    "prompt_create",
    "prompt_delete",
    "prompt_export_data",
    "prompt_rollback",
    "prompt_update",
    "prompts_import",
    "protected_by_default",
    "review_approve",
    "review_create",
    "review_reject",
    "review_submit",
]
