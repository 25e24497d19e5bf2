"""What the prompt API's views share: the OpenAPI tag and parameters, query parameters, the team a write names."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter

from agent_platform.accounts.selectors import team_get
from agent_platform.api.errors import PlatformError
from prompts import selectors
from prompts.api.serializers import PromptSerializer
from prompts.models import Prompt

TAG = ["prompts"]


def int_param(request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise PlatformError(f"{name} must be an integer.", code="VALIDATION_ERROR", field=name) from None
    if value < 1:
        raise PlatformError(f"{name} must be at least 1.", code="VALIDATION_ERROR", field=name)
    return value


def team_for(team_id: int | None):
    """The team a request names (whether the caller may use it is the services' rule)."""
    return None if team_id is None else team_get(team_id=team_id)


def prompt_body(prompt: Prompt) -> dict[str, Any]:
    prompt = selectors.prompt_list(user=None).get(pk=prompt.pk)
    return PromptSerializer(prompt).data


WRITE_RULE = (
    "Changing a prompt (new version, metadata, team, approval setting, labels, reviews, rollback, delete) is for its "
    "owner, members of its team (a team's prompt) and staff: a shared prompt only its owner and staff may change. "
    "Others get 403 POLICY_DENIED; a prompt the caller may not read is 404 PROMPT_NOT_FOUND."
)
LABEL_PARAM = OpenApiParameter("label", str, description="Serve this label (default: production, else latest).")
VERSION_PARAM = OpenApiParameter("version", int, description="Serve this version.")
