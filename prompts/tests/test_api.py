"""The prompt store's REST API: CRUD, versions, render, diff, rollback, labels, reviews, export/import."""

from __future__ import annotations

import pytest
import yaml
from django.contrib.auth.models import Permission
from django.utils import timezone

from agent_platform.accounts.services import team_create
from prompts import services

pytestmark = pytest.mark.django_db

BASE = "/api/v1/prompts/"


def grant(user, *codenames):
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="prompts"))


def create(client, **body):
    body = {"name": "greet", "text": "Hello {{ who }}!", **body}
    return client.post(BASE, body, format="json")


def error(response):
    return response.json()["error"]


def test_requires_authentication(api_client):
    assert api_client.get(BASE).status_code == 401


def test_create_get_update_versions(key_client):
    r = create(key_client, tags=["demo"], params={"temperature": 0.1})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["version"] == 1 and body["labels"] == {"latest": 1}
    assert body["variables"] == [{"name": "who", "type": "string", "required": True}]

    r = key_client.patch(f"{BASE}greet/", {"text": "Hi {{ who }}!", "change_note": "shorter"}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 2

    r = key_client.get(f"{BASE}greet/")
    assert r.json()["version"] == 2 and r.json()["text"] == "Hi {{ who }}!"  # no production label: latest
    assert key_client.get(f"{BASE}greet/?version=1").json()["text"] == "Hello {{ who }}!"
    assert key_client.get(f"{BASE}greet/versions/1/").json()["change_note"] == "Created"

    versions = key_client.get(f"{BASE}greet/versions/").json()
    assert [v["version"] for v in versions["results"]] == [2, 1]
    assert versions["results"][0]["author"] == "alice" and versions["results"][0]["change_note"] == "shorter"

    listing = key_client.get(BASE).json()
    assert [p["name"] for p in listing["results"]] == ["greet"]
    assert key_client.get(f"{BASE}?tag=demo").json()["count"] == 1
    assert key_client.get(f"{BASE}?tag=other").json()["count"] == 0


def test_bad_input_gets_coded_errors(key_client):
    r = create(key_client, text="Hello {{ who ")
    assert r.status_code == 422 and error(r)["code"] == "PROMPT_TEMPLATE_INVALID"
    assert error(r)["details"]["line"] == 1 and "column" in error(r)["details"]
    r = create(key_client, name="Bad Name")
    assert r.status_code == 422 and error(r)["code"] == "VALIDATION_ERROR" and error(r)["details"]["field"] == "name"
    r = create(key_client, variables=[{"name": "who", "type": "date"}])
    assert r.status_code == 422 and error(r)["details"]["field"] == "variables[0].type"
    r = create(key_client, template_type="chat", messages=[{"role": "user", "content": "{% if %}"}])
    assert error(r)["code"] == "PROMPT_TEMPLATE_INVALID" and error(r)["details"]["message_index"] == 0
    r = key_client.post(BASE, {"text": "x"}, format="json")
    assert r.status_code == 422 and "name" in error(r)["details"]["fields"]
    assert create(key_client).status_code == 201
    r = create(key_client)
    assert r.status_code == 409 and error(r)["code"] == "CONFLICT"
    r = key_client.get(f"{BASE}nope/")
    assert r.status_code == 404 and error(r)["code"] == "PROMPT_NOT_FOUND"
    assert error(key_client.get(f"{BASE}greet/?version=9"))["code"] == "PROMPT_NOT_FOUND"
    assert error(key_client.get(f"{BASE}greet/?version=x"))["details"]["field"] == "version"
    assert key_client.get(f"{BASE}greet/?label=canary").status_code == 404
    r = key_client.patch(f"{BASE}greet/", {"text": "{{ a }}", "variables": []}, format="json")
    assert r.status_code == 422 and error(r)["code"] == "PROMPT_VARIABLE_MISSING"
    assert key_client.get(f"{BASE}greet/").json()["version"] == 1  # nothing half-written


def test_render(key_client):
    create(
        key_client,
        template_type="chat",
        messages=[{"role": "system", "content": "Be {{ tone }}."}, {"role": "user", "content": "{{ q }}"}],
        variables=[{"name": "tone", "type": "string", "default": "brief"}, {"name": "q", "type": "string"}],
        model_endpoint="mock-chat",
    )
    r = key_client.post(f"{BASE}greet/render/", {"variables": {"q": "hi"}}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert r.json()["model_endpoint"] == "mock-chat" and r.json()["version"] == 1
    r = key_client.post(f"{BASE}greet/render/", {"variables": {}}, format="json")
    assert r.status_code == 422 and error(r)["code"] == "PROMPT_VARIABLE_MISSING" and "q" in error(r)["message"]
    r = key_client.post(f"{BASE}greet/render/", {"variables": {"q": 1}}, format="json")
    assert error(r)["code"] == "PROMPT_VARIABLE_INVALID"


def test_render_limits_and_sandbox_via_api(key_client):
    create(key_client, text="{{ ''.__class__ }}")
    r = key_client.post(f"{BASE}greet/render/", {}, format="json")
    assert r.status_code == 422 and error(r)["code"] == "PROMPT_SANDBOX_VIOLATION"
    key_client.patch(f"{BASE}greet/", {"text": "{{ 'x' * 10000000 }}"}, format="json")
    r = key_client.post(f"{BASE}greet/render/", {}, format="json")
    assert error(r)["code"] == "PROMPT_RENDER_LIMIT"


def test_diff_and_rollback(key_client):
    create(key_client, text="a\nb {{ who }}\n")
    key_client.patch(f"{BASE}greet/", {"text": "a\nB {{ who }}\n"}, format="json")
    r = key_client.get(f"{BASE}greet/diff/?from=1&to=2")
    assert r.status_code == 200 and "-b {{ who }}" in r.json()["text"] and "+B {{ who }}" in r.json()["text"]
    assert error(key_client.get(f"{BASE}greet/diff/?from=1"))["details"]["field"] == "to"
    r = key_client.post(f"{BASE}greet/rollback/", {"version": 1}, format="json")
    assert r.status_code == 201 and r.json()["version"] == 3 and r.json()["text"] == "a\nb {{ who }}\n"
    assert key_client.post(f"{BASE}greet/rollback/", {"version": 7}, format="json").status_code == 404


def test_labels_with_permission_and_approval(key_client, user, other_user):
    create(key_client, requires_approval=True)
    key_client.patch(f"{BASE}greet/", {"text": "v2 {{ who }}"}, format="json")

    r = key_client.post(f"{BASE}greet/labels/", {"label": "staging", "version": 1}, format="json")
    assert r.status_code == 200
    labels = {label["name"]: label for label in r.json()["labels"]}
    assert labels["staging"]["version"] == 1 and labels["latest"]["version"] == 2 and labels["latest"]["computed"]
    assert r.json()["moves"][0]["moved_by"] == "alice"
    assert key_client.get(f"{BASE}greet/?label=staging").json()["version"] == 1

    r = key_client.post(f"{BASE}greet/labels/", {"label": "production", "version": 2}, format="json")
    assert r.status_code == 403 and error(r)["code"] == "LABEL_PROTECTED"
    grant(user, "move_protected_label")
    r = key_client.post(f"{BASE}greet/labels/", {"label": "production", "version": 2}, format="json")
    assert r.status_code == 409 and error(r)["code"] == "APPROVAL_REQUIRED"

    assert (
        key_client.post(f"{BASE}greet/reviews/", {"action": "submit", "version": 2}, format="json").json()["state"]
        == "in_review"
    )
    r = key_client.post(f"{BASE}greet/reviews/", {"action": "approve", "version": 2}, format="json")
    assert r.status_code == 403 and error(r)["code"] == "POLICY_DENIED"
    from rest_framework.test import APIClient

    reviewer = APIClient()
    grant(other_user, "review_prompt")
    reviewer.force_authenticate(other_user)
    r = reviewer.post(f"{BASE}greet/reviews/", {"action": "approve", "version": 2, "note": "ok"}, format="json")
    assert r.status_code == 200 and r.json()["state"] == "approved" and r.json()["reviewed_by"] == "bob"

    r = key_client.post(f"{BASE}greet/labels/", {"label": "production", "version": 2}, format="json")
    assert r.status_code == 200
    assert key_client.get(f"{BASE}greet/").json()["version"] == 2
    assert key_client.get(f"{BASE}greet/").json()["label"] == "production"
    history = key_client.get(f"{BASE}greet/labels/production/").json()
    assert [(m["from_version"], m["to_version"]) for m in history] == [(None, 2)]
    assert key_client.get(f"{BASE}greet/reviews/").json()[0]["state"] == "approved"

    r = key_client.post(f"{BASE}greet/labels/", {"label": "latest", "version": 1}, format="json")
    assert r.status_code == 422
    assert key_client.delete(f"{BASE}greet/labels/staging/").status_code == 204
    assert key_client.get(f"{BASE}greet/?label=staging").status_code == 404


def test_point_in_time(key_client, admin_user):
    create(key_client)
    services.label_move(name="greet", label="production", version=1, user=admin_user)
    between = timezone.now()
    key_client.patch(f"{BASE}greet/", {"text": "v2 {{ who }}"}, format="json")
    services.label_move(name="greet", label="production", version=2, user=admin_user)
    r = key_client.get(f"{BASE}greet/at/", {"when": between.isoformat(), "label": "production"})
    assert r.status_code == 200 and r.json()["version"] == 1
    assert key_client.get(f"{BASE}greet/at/", {"when": timezone.now().isoformat()}).json()["version"] == 2
    r = key_client.get(f"{BASE}greet/at/", {"when": "yesterday"})
    assert r.status_code == 422 and error(r)["details"]["field"] == "when"


def test_split_via_api(key_client):
    create(key_client)
    key_client.patch(f"{BASE}greet/", {"text": "v2 {{ who }}"}, format="json")
    r = key_client.post(
        f"{BASE}greet/labels/", {"label": "canary", "version": 1, "split": {"1": 50, "2": 50}}, format="json"
    )
    assert r.status_code == 200
    seen = set()
    for key in range(30):
        body = key_client.post(
            f"{BASE}greet/render/",
            {"label": "canary", "variables": {"who": "x"}, "stickiness_key": str(key)},
            format="json",
        ).json()
        seen.add((body["version"], body["ab_variant"]))
    assert seen == {(1, "v1"), (2, "v2")}


def test_team_visibility(key_client, other_user):
    from rest_framework.test import APIClient

    team = team_create(name="red", members=[other_user])
    services.prompt_create(name="secret-plan", text="x", team=team)
    services.prompt_create(name="shared", text="y")
    names = [p["name"] for p in key_client.get(BASE).json()["results"]]
    assert names == ["shared"]
    assert key_client.get(f"{BASE}secret-plan/").status_code == 404
    assert key_client.post(f"{BASE}secret-plan/render/", {}, format="json").status_code == 404
    assert key_client.patch(f"{BASE}secret-plan/", {"text": "z"}, format="json").status_code == 404
    member = APIClient()
    member.force_authenticate(other_user)
    assert member.get(f"{BASE}secret-plan/").status_code == 200
    refused = create(key_client, name="mine", team=team.pk)  # not alice's team: the one team rule of every app
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "POLICY_DENIED"


def test_delete(key_client):
    create(key_client)
    assert key_client.delete(f"{BASE}greet/").status_code == 204
    assert key_client.get(f"{BASE}greet/").status_code == 404


def test_export_and_import_yaml_and_json(key_client, admin_user):
    services.prompt_create(name="a", text="Hi {{ who }}", tags=["t"], labels=["staging"])
    services.prompt_create(
        name="b", template_type="chat", messages=[{"role": "system", "content": "x"}], params={"temperature": 0}
    )
    r = key_client.get(f"{BASE}export/?format=yaml")
    assert r.status_code == 200 and r["Content-Type"].startswith("application/yaml")
    doc = yaml.safe_load(r.content)
    assert [p["name"] for p in doc["prompts"]] == ["a", "b"]
    assert doc["prompts"][0]["labels"] == ["staging"] and doc["prompts"][0]["text"] == "Hi {{ who }}"
    as_json = key_client.get(f"{BASE}export/?name=b").json()
    assert [p["name"] for p in as_json["prompts"]] == ["b"]

    # round trip: delete, import the YAML back, then import a changed JSON version
    services.prompt_delete(name="a")
    r = key_client.post(f"{BASE}import/", data=r.content, content_type="application/yaml")
    assert r.status_code == 200, r.content
    assert r.json() == {"created": ["a"], "updated": [], "unchanged": ["b"]}
    assert key_client.get(f"{BASE}a/?label=staging").json()["text"] == "Hi {{ who }}"
    doc["prompts"][0]["text"] = "Hello {{ who }}"
    r = key_client.post(f"{BASE}import/", doc, format="json")
    assert r.json()["updated"] == ["a"]
    assert key_client.get(f"{BASE}a/").json()["version"] == 2


def test_import_is_all_or_nothing(key_client):
    doc = {"prompts": [{"name": "ok", "text": "fine"}, {"name": "bad", "text": "{{ oops "}]}
    r = key_client.post(f"{BASE}import/", doc, format="json")
    assert r.status_code == 422 and error(r)["code"] == "PROMPT_TEMPLATE_INVALID"
    assert error(r)["details"]["index"] == 1 and error(r)["message"].startswith("prompts[1]")
    assert key_client.get(f"{BASE}ok/").status_code == 404
    r = key_client.post(f"{BASE}import/", data=b"prompts: [unclosed", content_type="application/yaml")
    assert r.status_code == 400 and error(r)["code"] == "PARSE_ERROR"
    r = key_client.post(f"{BASE}import/", {"prompts": "nope"}, format="json")
    assert r.status_code == 422
