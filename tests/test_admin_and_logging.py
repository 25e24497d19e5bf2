"""API keys in the admin, and structured logs carrying request and trace ids."""

import json
import logging

import pytest

from agent_platform.accounts.models import ApiKey
from tests.factories import TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_admin_creates_a_key_and_shows_it_once(client, admin_user):
    client.force_login(admin_user)
    owner = UserFactory()
    response = client.post(
        "/admin/accounts/apikey/add/", {"user": owner.pk, "name": "deploy bot", "expires_at": ""}, follow=True
    )
    assert response.status_code == 200
    api_key = ApiKey.objects.get(name="deploy bot")
    shown = [str(m) for m in response.context["messages"]]
    assert any(f"ap_{api_key.prefix}_" in m for m in shown)
    listing = client.get("/admin/accounts/apikey/").content.decode()
    assert f"ap_{api_key.prefix}_…" in listing
    raw = next(m for m in shown if "ap_" in m).split(": ", 1)[1]
    assert raw not in listing


def test_team_changes_are_kept_in_history(client, admin_user):
    team = TeamFactory(name="research")
    team.name = "research-eu"
    team.save()
    assert [h.name for h in team.history.all()] == ["research-eu", "research"]
    client.force_login(admin_user)
    assert client.get(f"/admin/accounts/team/{team.pk}/history/").status_code == 200


def test_log_lines_are_json_with_request_and_trace_ids():
    from agent_platform.observability import context
    from agent_platform.observability.logging import make_formatter

    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(make_formatter("json").format(record))

    handler = Keep()
    logger = logging.getLogger("agent_platform.test")
    logger.addHandler(handler)
    request_token = context.set_request_id("trace-me-123456")
    trace_token = context.set_trace(context.TraceContext(trace_id="f" * 32, span_id="e" * 16))
    try:
        logger.warning("something happened to %s", "x")
    finally:
        context.reset_trace(trace_token)
        context.reset_request_id(request_token)
        logger.removeHandler(handler)
    line = json.loads(lines[-1])
    assert line["event"] == "something happened to x"
    assert line["request_id"] == "trace-me-123456"
    assert line["trace_id"] == "f" * 32 and line["span_id"] == "e" * 16
    assert line["level"] == "warning" and "timestamp" in line
