"""Admin (through the services) and dashboard pages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from prompts import selectors, services
from prompts.models import LabelMove, Prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user):
    from django.test import Client

    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff_client(django_user_model):
    """Staff with change rights on prompts but without the protected-label / review permissions."""
    from django.test import Client

    client = Client()
    staff = django_user_model.objects.create_user(username="carol", password="correct-horse-battery", is_staff=True)
    for codename in ("view_prompt", "change_prompt", "add_prompt"):
        staff.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="prompts"))
    client.force_login(staff)
    return client


def form_data(**overrides):
    data = {
        "name": "greet",
        "description": "",
        "tags": "[]",
        "template_type": "text",
        "text": "Hello {{ who }}!",
        "messages": "[]",
        "variables": "[]",
        "model_endpoint": "",
        "params": "{}",
        "change_note": "first",
    }
    data.update(overrides)
    return data


def test_admin_add_and_change_create_versions(admin_client):
    r = admin_client.post("/admin/prompts/prompt/add/", form_data())
    assert r.status_code == 302, r.content.decode()[:2000]
    prompt = Prompt.objects.get(name="greet")
    assert prompt.version == 1 and prompt.variables == [{"name": "who", "type": "string", "required": True}]
    r = admin_client.post(
        f"/admin/prompts/prompt/{prompt.pk}/change/",
        form_data(
            text="Hi {{ who }}!",
            variables='[{"name": "who", "type": "string", "required": true}]',
            change_note="shorter",
        ),
    )
    assert r.status_code == 302
    versions = selectors.list_versions(name="greet")
    assert [(v.version, v.change_note, v.author) for v in versions] == [(2, "shorter", "root"), (1, "first", "root")]


def test_admin_form_reports_template_errors_on_the_field(admin_client):
    r = admin_client.post("/admin/prompts/prompt/add/", form_data(text="line\n{{ who + }}"))
    assert r.status_code == 200
    errors = r.context["adminform"].form.errors
    assert "text" in errors and "PROMPT_TEMPLATE_INVALID" in errors["text"][0] and "line 2" in errors["text"][0]
    r = admin_client.post(
        "/admin/prompts/prompt/add/",
        form_data(template_type="chat", text="", messages='[{"role": "user", "content": "{{ x"}]'),
    )
    assert "messages" in r.context["adminform"].form.errors
    assert not Prompt.objects.exists()


def test_admin_list_shows_labels_and_latest(admin_client):
    services.prompt_create(name="greet", text="x", labels=["production"])
    body = admin_client.get("/admin/prompts/prompt/").content.decode()
    assert "greet" in body and "production" in body and "v1" in body


def test_versions_page_with_diff(admin_client):
    prompt = services.prompt_create(name="greet", text="alpha\n")
    services.prompt_update(name="greet", text="beta\n", change_note="to beta")
    r = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/versions/?from=1&to=2")
    body = r.content.decode()
    assert r.status_code == 200 and "to beta" in body and "-alpha" in body and "+beta" in body


def test_rollback_needs_confirmation(admin_client):
    prompt = services.prompt_create(name="greet", text="alpha")
    services.prompt_update(name="greet", text="beta")
    url = f"/admin/prompts/prompt/{prompt.pk}/rollback/1/"
    r = admin_client.get(url)
    assert r.status_code == 200 and "new version v3" in r.content.decode()
    assert Prompt.objects.get().version == 2  # nothing happened yet
    r = admin_client.post(url, {"note": "back"})
    assert r.status_code == 302
    assert Prompt.objects.get().version == 3 and Prompt.objects.get().text == "alpha"


def test_label_move_confirmation_and_permission(admin_client, staff_client):
    prompt = services.prompt_create(name="greet", text="alpha", labels=["production"])
    services.prompt_update(name="greet", text="beta")
    url = f"/admin/prompts/prompt/{prompt.pk}/labels/"
    r = staff_client.post(url, {"label": "production", "version": "2"})
    assert r.status_code == 200 and "protected" in r.content.decode()  # the confirmation page
    assert selectors.get_prompt(name="greet").version == 1
    r = staff_client.post(url, {"label": "production", "version": "2", "confirm": "yes"})
    assert "LABEL_PROTECTED" in r.content.decode()
    assert selectors.get_prompt(name="greet").version == 1
    r = admin_client.post(url, {"label": "production", "version": "2", "confirm": "yes", "note": "ship"})
    assert r.status_code == 302
    assert selectors.get_prompt(name="greet").version == 2
    assert LabelMove.objects.filter(label="production", to_version=2, note="ship").exists()


def test_review_buttons(admin_client, staff_client):
    prompt = services.prompt_create(name="greet", text="alpha", requires_approval=True)
    url = f"/admin/prompts/prompt/{prompt.pk}/review/"
    staff_client.post(url, {"action": "submit", "version": "1"})
    assert selectors.review_list(name="greet").get().state == "in_review"
    r = staff_client.post(url, {"action": "approve", "version": "1"}, follow=True)
    assert "POLICY_DENIED" in r.content.decode()
    admin_client.post(url, {"action": "approve", "version": "1"})
    assert selectors.review_list(name="greet").get().state == "approved"


def test_preview(admin_client):
    prompt = services.prompt_create(
        name="greet", template_type="chat", messages=[{"role": "user", "content": "Hi {{ who }}"}]
    )
    url = f"/admin/prompts/prompt/{prompt.pk}/preview/"
    assert admin_client.get(url).status_code == 200
    r = admin_client.post(url, {"version": "1", "variables": '{"who": "Ada"}'})
    assert "Hi Ada" in r.content.decode()
    r = admin_client.post(url, {"version": "1", "variables": "{}"})
    assert "PROMPT_VARIABLE_MISSING" in r.content.decode()
    r = admin_client.post(url, {"version": "1", "variables": "{nope"})
    assert "not valid JSON" in r.content.decode()


def test_admin_delete_goes_through_the_service(admin_client):
    prompt = services.prompt_create(name="greet", text="x")
    r = admin_client.post(f"/admin/prompts/prompt/{prompt.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302 and not Prompt.objects.exists()


def test_dashboard_pages(client, user):
    services.demo_prompts_load()
    assert client.get("/dashboard/prompts/").status_code == 302  # login required
    client.force_login(user)
    body = client.get("/dashboard/prompts/").content.decode()
    assert "assistant-system" in body and "summarize" in body
    r = client.get("/dashboard/prompts/summarize/")
    body = r.content.decode()
    assert r.status_code == 200 and "TL;DR" in body and "Ask for a TL;DR line" in body
    assert client.get("/dashboard/prompts/nope/").status_code == 404


def test_demo_loader_is_idempotent_and_renders():
    services.demo_prompts_load()
    services.demo_prompts_load()
    assert Prompt.objects.count() == 3
    out = selectors.render_prompt("assistant-system", {"question": "What is 2+2?"})
    assert out.label == "production" and out.messages[1]["content"] == "What is 2+2?"
    assert selectors.render_prompt("summarize", {"document": "text"}).version == 1  # production stays on v1
    assert selectors.render_prompt("summarize", {"document": "text"}, label="staging").version == 2


def test_admin_pages_render(admin_client):
    prompt = services.prompt_create(name="greet", text="x {{ who }}", labels=["staging"])
    change = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/change/").content.decode()
    assert "Versions &amp; diff" in change and "Move a label" in change and "Preview" in change
    labels = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/labels/?version=1")
    assert labels.status_code == 200 and 'name="label"' in labels.content.decode()
    assert admin_client.get("/admin/prompts/labelmove/").status_code == 200
    assert admin_client.get("/admin/prompts/promptreview/").status_code == 200
    assert admin_client.get("/admin/prompts/prompt/add/").status_code == 200
