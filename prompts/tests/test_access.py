"""Who may read and change a prompt, tried as an attacker: one rule (prompts.selectors), applied by every service.

Read: staff, everyone for a shared (team-less) prompt, the owner and the team's members for a team's prompt.
Write: staff, the owner, and for a team's prompt the team's members — so a shared prompt only its owner and staff.
A prompt one may not read is 404 PROMPT_NOT_FOUND with the message of a missing one; one that may be read but not
changed is 403 POLICY_DENIED; nothing is written either way.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Permission
from rest_framework.test import APIClient

from agent_platform.accounts.services import team_create
from agent_platform.api.errors import PlatformError
from prompts import selectors, services
from prompts.models import LabelMove, Prompt, PromptLabel
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BASE = "/api/v1/prompts/"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def error(response) -> dict:
    return response.json()["error"]


def grant_all_prompt_permissions(user):
    """Model permissions do not make someone the owner: the attacker gets every one of them."""
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="prompts"))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def people():
    owner = UserFactory(username="owner")
    a_member = UserFactory(username="amy")
    b_member = UserFactory(username="bert")
    team_a = team_create(name="team-a", members=[a_member, owner])
    team_b = team_create(name="team-b", members=[b_member])
    return {"owner": owner, "a_member": a_member, "b_member": b_member, "team_a": team_a, "team_b": team_b}


@pytest.fixture
def shared_prompt(people, admin_user):
    """A shared prompt (no team) of `owner`, requiring approval, with a protected production label."""
    owner = people["owner"]
    services.prompt_create(name="shared-plan", text="Plan for {{ who }}.", requires_approval=True, user=owner)
    services.prompt_update(name="shared-plan", text="Better plan for {{ who }}.", user=owner)
    services.review_submit(name="shared-plan", version=1, user=owner)
    services.review_approve(name="shared-plan", version=1, user=admin_user)
    services.label_move(name="shared-plan", label="production", version=1, user=admin_user)
    services.label_move(name="shared-plan", label="staging", version=2, user=owner)
    return Prompt.objects.get(name="shared-plan")


@pytest.fixture
def team_a_prompt(people):
    return services.prompt_create(
        name="a-secret",
        text="Team A secret: {{ launch_code }}",
        team=people["team_a"],
        user=people["a_member"],
        labels=["staging"],
    )


# --- the rule itself --------------------------------------------------------------------------------------------


def test_the_rule_for_each_kind_of_person(people, admin_user, shared_prompt, team_a_prompt):
    ownerless_shared = services.prompt_create(name="demo-ish", text="x")
    outsider = UserFactory(username="outsider")
    cases = [
        # (prompt, user, readable, writable)
        (shared_prompt, people["owner"], True, True),
        (shared_prompt, people["b_member"], True, False),
        (shared_prompt, outsider, True, False),
        (shared_prompt, admin_user, True, True),
        (shared_prompt, AnonymousUser(), False, False),
        (ownerless_shared, people["owner"], True, False),
        (ownerless_shared, admin_user, True, True),
        (team_a_prompt, people["a_member"], True, True),
        (team_a_prompt, people["owner"], True, True),  # a member of team A too
        (team_a_prompt, people["b_member"], False, False),
        (team_a_prompt, outsider, False, False),
        (team_a_prompt, admin_user, True, True),
    ]
    for prompt, user, readable, writable in cases:
        assert selectors.prompt_readable_by(prompt=prompt, user=user) is readable, (prompt.name, str(user))
        assert selectors.prompt_writable_by(prompt=prompt, user=user) is writable, (prompt.name, str(user))
        listed = selectors.visible_prompts(user=user).filter(pk=prompt.pk).exists()
        assert listed is readable, (prompt.name, str(user))


def test_an_owner_who_left_the_team_still_reads_and_changes_their_prompt(people, team_a_prompt):
    people["team_a"].members.remove(people["a_member"])  # amy created a-secret, then left team A
    assert selectors.prompt_readable_by(prompt=team_a_prompt, user=people["a_member"])
    assert selectors.prompt_writable_by(prompt=team_a_prompt, user=people["a_member"])


def test_readers_of_an_indirect_path_must_each_be_allowed(people, admin_user, shared_prompt, team_a_prompt):
    readers = selectors.PromptReaders.of
    readable = selectors.prompts_readable_by_all

    def names(r):
        return set(readable(readers=r).values_list("name", flat=True))

    a_member, b_member = people["a_member"].pk, people["b_member"].pk
    assert names(readers(user_ids=[a_member])) == {"shared-plan", "a-secret"}
    assert names(readers(user_ids=[b_member])) == {"shared-plan"}
    assert names(readers(user_ids=[a_member, b_member])) == {"shared-plan"}  # the stricter of the two
    assert names(readers(user_ids=[admin_user.pk, b_member])) == {"shared-plan"}
    assert names(readers(user_ids=[admin_user.pk])) == {"shared-plan", "a-secret"}
    assert names(readers(team_ids=[people["team_a"].pk])) == {"shared-plan", "a-secret"}
    assert names(readers(user_ids=[a_member], team_ids=[people["team_b"].pk])) == {"shared-plan"}
    assert names(readers(user_ids=[None], team_ids=[None])) == {"shared-plan"}  # nobody in particular: shared only
    assert names(readers(user_ids=[987654])) == set()  # a user that does not exist reads nothing


# --- reading through the API as team B ------------------------------------------------------------------------------


def test_team_b_cannot_read_team_a_prompt_by_any_read_path_and_learns_nothing(people, team_a_prompt):
    attacker = client_for(people["b_member"])
    paths = [
        ("get", "{}/"),
        ("get", "{}/?version=1"),
        ("get", "{}/?label=staging"),
        ("get", "{}/versions/"),
        ("get", "{}/versions/1/"),
        ("get", "{}/at/?when=2030-01-01T00:00:00Z"),
        ("get", "{}/diff/?from=1&to=1"),
        ("get", "{}/labels/"),
        ("get", "{}/labels/staging/"),
        ("get", "{}/reviews/"),
        ("post", "{}/render/"),
    ]
    for method, template in paths:
        hidden = getattr(attacker, method)(BASE + template.format("a-secret"), {}, format="json")
        missing = getattr(attacker, method)(BASE + template.format("no-such-prompt"), {}, format="json")
        assert hidden.status_code == 404, (template, hidden.content)
        assert error(hidden)["code"] == "PROMPT_NOT_FOUND"
        # same answer as for a name that does not exist: no hint that it does
        assert error(hidden)["message"].replace("a-secret", "X") == error(missing)["message"].replace(
            "no-such-prompt", "X"
        ), template
        assert b"launch_code" not in hidden.content and b"Team A secret" not in hidden.content
    assert [p["name"] for p in attacker.get(BASE).json()["results"]] == []
    assert attacker.get(f"{BASE}export/").json() == {"prompts": []}
    assert client_for(people["a_member"]).get(f"{BASE}a-secret/").status_code == 200


# --- writing shared prompts as someone with no rights on them --------------------------------------------------------


def test_a_user_without_rights_cannot_change_a_shared_prompt_in_any_way(people, shared_prompt):
    attacker_user = grant_all_prompt_permissions(people["b_member"])
    attacker = client_for(attacker_user)
    moves_before = LabelMove.objects.count()
    attempts = [
        ("patch", "shared-plan/", {"text": "Pwned {{ who }}"}),  # new version
        ("put", "shared-plan/", {"description": "mine now"}),  # metadata
        ("patch", "shared-plan/", {"team": people["team_b"].pk}),  # re-team into the attacker's team
        ("patch", "shared-plan/", {"requires_approval": False}),  # approval off
        ("post", "shared-plan/rollback/", {"version": 1}),
        ("post", "shared-plan/labels/", {"label": "production", "version": 2}),  # protected label move
        ("post", "shared-plan/labels/", {"label": "staging", "version": 1}),  # plain label move
        ("post", "shared-plan/labels/", {"label": "canary", "version": 1, "split": {"1": 50, "2": 50}}),
        ("delete", "shared-plan/labels/production/", None),
        ("delete", "shared-plan/labels/staging/", None),
        ("post", "shared-plan/reviews/", {"action": "submit", "version": 2}),
        ("post", "shared-plan/reviews/", {"action": "draft", "version": 2}),
        ("delete", "shared-plan/", None),
    ]
    for method, path, body in attempts:
        response = getattr(attacker, method)(BASE + path, body, format="json")
        assert response.status_code == 403, (method, path, response.content)
        assert error(response)["code"] == "POLICY_DENIED", (method, path)

    r = attacker.post(
        f"{BASE}import/", {"prompts": [{"name": "shared-plan", "text": "Imported {{ who }}"}]}, format="json"
    )
    assert r.status_code == 403 and error(r)["code"] == "POLICY_DENIED" and error(r)["details"]["index"] == 0

    prompt = Prompt.objects.get(name="shared-plan")  # nothing was written
    assert prompt.version == 2 and prompt.team_id is None and prompt.requires_approval
    assert prompt.text == "Better plan for {{ who }}." and prompt.description == ""
    labels = {label.name: label.version for label in PromptLabel.objects.filter(prompt=prompt)}
    assert labels == {"production": 1, "staging": 2}
    assert LabelMove.objects.count() == moves_before
    assert prompt.reviews.filter(version=2).count() == 0
    # still readable by everyone: it is shared
    assert attacker.get(f"{BASE}shared-plan/").json()["version"] == 1


def test_writes_on_a_prompt_one_may_not_read_are_404_not_403(people, team_a_prompt):
    attacker = client_for(people["b_member"])
    for method, path, body in [
        ("patch", "a-secret/", {"text": "x"}),
        ("delete", "a-secret/", None),
        ("post", "a-secret/labels/", {"label": "staging", "version": 1}),
        ("delete", "a-secret/labels/staging/", None),
        ("post", "a-secret/rollback/", {"version": 1}),
        ("post", "a-secret/reviews/", {"action": "submit", "version": 1}),
    ]:
        response = getattr(attacker, method)(BASE + path, body, format="json")
        assert response.status_code == 404 and error(response)["code"] == "PROMPT_NOT_FOUND", (method, path)
    assert Prompt.objects.get(name="a-secret").version == 1


def test_an_anonymous_user_given_to_a_service_is_nobody_not_the_platform(shared_prompt):
    with pytest.raises(PlatformError) as err:
        services.prompt_update(name="shared-plan", text="x", user=AnonymousUser())
    assert err.value.code == "PROMPT_NOT_FOUND"
    with pytest.raises(PlatformError) as err:
        services.prompt_delete(name="shared-plan", user=AnonymousUser())
    assert err.value.code == "PROMPT_NOT_FOUND"
    with pytest.raises(PlatformError) as err:
        services.prompt_create(name="anon", text="x", user=AnonymousUser())
    assert err.value.code == "POLICY_DENIED"
    assert Prompt.objects.filter(name="shared-plan").exists() and not Prompt.objects.filter(name="anon").exists()


# --- the owner, the team and staff still can --------------------------------------------------------------------------


def test_the_owner_changes_their_shared_prompt(people, shared_prompt):
    owner = client_for(people["owner"])
    r = owner.patch(f"{BASE}shared-plan/", {"text": "Owner's plan for {{ who }}."}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 3
    r = owner.patch(f"{BASE}shared-plan/", {"requires_approval": False}, format="json")
    assert r.status_code == 200 and r.json()["requires_approval"] is False
    assert (
        owner.post(f"{BASE}shared-plan/labels/", {"label": "staging", "version": 3}, format="json").status_code == 200
    )
    r = owner.patch(f"{BASE}shared-plan/", {"team": people["team_a"].pk}, format="json")  # into their own team
    assert r.status_code == 200 and r.json()["team"] == people["team_a"].pk
    # now a team A prompt: team B no longer sees it
    assert client_for(people["b_member"]).get(f"{BASE}shared-plan/").status_code == 404
    assert client_for(people["a_member"]).get(f"{BASE}shared-plan/").status_code == 200
    assert owner.delete(f"{BASE}shared-plan/").status_code == 204


def test_the_owner_cannot_move_a_prompt_into_a_team_they_are_not_in(people, shared_prompt):
    with pytest.raises(PlatformError) as err:
        services.prompt_update(name="shared-plan", team=people["team_b"], user=people["owner"])
    assert err.value.code == "POLICY_DENIED" and err.value.details["field"] == "team"
    with pytest.raises(PlatformError) as err:
        services.prompt_create(name="into-b", text="x", team=people["team_b"], user=people["owner"])
    assert err.value.code == "POLICY_DENIED" and err.value.details["field"] == "team"
    assert Prompt.objects.get(name="shared-plan").team_id is None
    assert not Prompt.objects.filter(name="into-b").exists()


def test_team_members_change_their_team_prompt(people, team_a_prompt):
    owner = client_for(people["owner"])  # not the creator, but a member of team A
    r = owner.patch(f"{BASE}a-secret/", {"text": "Team A secret v2: {{ launch_code }}"}, format="json")
    assert r.status_code == 200 and r.json()["version"] == 2
    assert owner.post(f"{BASE}a-secret/labels/", {"label": "staging", "version": 2}, format="json").status_code == 200


def test_staff_change_and_delete_anything(admin_user, shared_prompt, team_a_prompt):
    staff = client_for(admin_user)
    assert staff.patch(f"{BASE}shared-plan/", {"description": "tidied"}, format="json").status_code == 200
    assert staff.patch(f"{BASE}a-secret/", {"description": "tidied"}, format="json").status_code == 200
    assert (
        staff.post(f"{BASE}shared-plan/labels/", {"label": "production", "version": 1}, format="json").status_code
        == 200
    )
    assert staff.delete(f"{BASE}shared-plan/").status_code == 204
    assert staff.delete(f"{BASE}a-secret/").status_code == 204
    assert not Prompt.objects.filter(name__in=["shared-plan", "a-secret"]).exists()


def test_a_request_that_changes_nothing_writes_nothing_and_needs_no_right(people, shared_prompt):
    """Re-importing an export of shared prompts one may read but not change reports them unchanged."""
    reader = client_for(people["b_member"])
    doc = reader.get(f"{BASE}export/?name=shared-plan").json()
    r = reader.post(f"{BASE}import/", doc, format="json")
    assert r.status_code == 403  # the export's labels would move production: a write
    for item in doc["prompts"]:
        item.pop("labels")
    r = reader.post(f"{BASE}import/", doc, format="json")
    assert r.status_code == 200 and r.json() == {"created": [], "updated": [], "unchanged": ["shared-plan"]}
    assert Prompt.objects.get(name="shared-plan").version == 2
