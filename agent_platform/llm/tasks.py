"""Celery entry points of the LLM layer (thin: they call services)."""

from __future__ import annotations

from dataclasses import asdict

from celery import shared_task

from agent_platform.llm.models import ModelEndpoint
from agent_platform.llm.services import endpoint_check


@shared_task(name="llm.endpoint_check")
def endpoint_check_task(endpoint_id: int) -> dict:
    """Check one endpoint with a tiny real call; returns the `EndpointCheck` as a dict."""
    name = ModelEndpoint.objects.values_list("name", flat=True).get(pk=endpoint_id)
    return asdict(endpoint_check(name=name))
