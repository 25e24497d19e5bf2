"""The API behaves as its OpenAPI schema says, for an ordinary user: schemathesis (the standard OpenAPI fuzzer)
sends generated requests to every operation and checks each answer for a server error, an undocumented status
code or content type, and a body that violates the documented schema."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Bounded so the whole schema (about 80 operations) runs in CI in well under a minute; derandomized so a red run
# is reproducible and a green one does not turn red by chance.
EXAMPLES_PER_OPERATION = 8


@pytest.fixture
def ordinary_key(db, django_user_model):
    """An ordinary user's API key, with the demo content (shared prompts and agents) in the database."""
    from agent_platform.accounts.services import api_key_create
    from agents.services import demo_agents_load
    from prompts.services import demo_prompts_load

    demo_prompts_load()
    demo_agents_load()
    user = django_user_model.objects.create_user(username="ordinary", password="a-long-enough-password-1")
    return api_key_create(user=user, name="fuzz").raw_key


@pytest.fixture(autouse=True)
def _in_test_transaction(settings):
    from django.core import signals
    from django.db import close_old_connections

    from agent_platform.celery import app

    # schemathesis calls the WSGI app directly, not through Django's test client: keep the request cycle from
    # closing the connection that holds the test's transaction, as the test client does.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    # A run the fuzzer starts with "wait": true must not wait for a worker this test does not start.
    settings.AGENT_RUN_WAIT_SECONDS = 1
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# Serving the schema reads no database, so it is loaded once, at collection, from the app itself.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, ordinary_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {ordinary_key}"}, checks=CHECKS)


def test_interactive_docs_load_every_asset_from_this_server(client):
    import re

    page = client.get("/api/docs/")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.content.decode())
    assert any("swagger-ui-bundle.js" in url for url in assets)
    for url in assets:
        assert url.startswith("/"), f"{url} is not served by the platform itself (the docs must work offline)"
        assert client.get(url).status_code == 200, url


def test_paginated_lists_are_documented_as_pages(client):
    document = client.get("/api/schema/?format=json").json()
    agents_list = document["paths"]["/api/v1/agents/"]["get"]
    body = agents_list["responses"]["200"]["content"]["application/json"]["schema"]
    page = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert {"count", "next", "previous", "results"} <= set(page["properties"])
    assert {p["name"] for p in agents_list["parameters"]} >= {"page", "page_size"}
    # A list a POST answers (bulk add) stays a plain array.
    bulk_add = document["paths"]["/api/v1/datasets/{dataset_id}/items/"]["post"]["responses"]["201"]
    assert bulk_add["content"]["application/json"]["schema"]["type"] == "array"
