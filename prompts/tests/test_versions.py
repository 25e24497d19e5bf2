"""Versions, diff, rollback and point-in-time reads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from prompts import selectors, services

pytestmark = pytest.mark.django_db


def make_text(name="greet", text="Hello {{ who }}!", **kw):
    return services.prompt_create(name=name, text=text, **kw)


def test_every_change_is_a_numbered_version_with_author_time_and_note(user):
    make_text(user=user, change_note="first")
    services.prompt_update(name="greet", text="Hi {{ who }}!", user=user, change_note="shorter")
    services.prompt_update(name="greet", description="A greeting", change_note="describe")
    versions = selectors.list_versions(name="greet")
    assert [v.version for v in versions] == [3, 2, 1]
    assert [v.change_note for v in versions] == ["describe", "shorter", "first"]
    assert versions[1].author == "alice" and versions[2].author == "alice" and versions[0].author is None
    assert versions[0].created_at >= versions[1].created_at >= versions[2].created_at
    assert versions[1].text == "Hi {{ who }}!" and versions[2].text == "Hello {{ who }}!"
    assert selectors.get_prompt(name="greet", version=1).text == "Hello {{ who }}!"


def test_an_update_that_changes_nothing_makes_no_version():
    make_text()
    prompt = services.prompt_update(name="greet", text="Hello {{ who }}!")
    assert prompt.version == 1
    assert len(selectors.list_versions(name="greet")) == 1


def test_variables_are_inferred_when_no_schema_is_given():
    prompt = make_text(text="{{ a }} and {{ b }}")
    assert prompt.variables == [
        {"name": "a", "type": "string", "required": True},
        {"name": "b", "type": "string", "required": True},
    ]


def test_a_template_using_an_undeclared_variable_is_refused_with_an_explicit_schema():
    with pytest.raises(PlatformError) as err:
        make_text(text="{{ a }} {{ b }}", variables=[{"name": "a", "type": "string"}])
    assert err.value.code == "PROMPT_VARIABLE_MISSING" and err.value.details["variable"] == "b"
    assert not selectors.visible_prompts().exists()


def test_invalid_save_writes_nothing():
    make_text()
    with pytest.raises(PlatformError) as err:
        services.prompt_update(name="greet", text="Hello {{ who ")
    assert err.value.code == "PROMPT_TEMPLATE_INVALID"
    assert len(selectors.list_versions(name="greet")) == 1
    assert selectors.get_prompt(name="greet").text == "Hello {{ who }}!"


def test_duplicate_and_bad_names():
    make_text()
    with pytest.raises(PlatformError) as err:
        make_text()
    assert err.value.code == "CONFLICT"
    for bad in ("Has Space", "", "export", "x" * 101, "UPPER"):
        with pytest.raises(PlatformError) as err:
            make_text(name=bad)
        assert err.value.code == "VALIDATION_ERROR" and err.value.details["field"] == "name"


def test_diff_text_prompt_line_by_line():
    make_text(text="line one\nline two {{ who }}\nline three\n")
    services.prompt_update(name="greet", text="line one\nline 2 {{ who }}\nline three\n", params={"temperature": 0.5})
    diff = selectors.compare_versions(name="greet", v1=1, v2=2)
    assert diff.changed_fields == ["text", "params"]
    assert "-line two {{ who }}\n" in diff.text and "+line 2 {{ who }}\n" in diff.text
    assert " line one\n" in diff.text
    assert diff.fields == {"params": {"from": {}, "to": {"temperature": 0.5}}}
    assert "@@ params" in diff.unified and "+line 2" in diff.unified


def test_diff_chat_prompt_per_message():
    services.prompt_create(
        name="chat",
        template_type="chat",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{ q }}"}],
    )
    services.prompt_update(
        name="chat",
        messages=[
            {"role": "system", "content": "Be brief.\nBe kind."},
            {"role": "user", "content": "{{ q }}"},
            {"role": "assistant", "content": "OK"},
        ],
    )
    diff = selectors.compare_versions(name="chat", v1=1, v2=2)
    assert [(m["index"], m["status"]) for m in diff.messages] == [(0, "changed"), (2, "added")]
    assert "+Be kind.\n" in diff.messages[0]["diff"]
    assert "messages[0] (system)" in diff.messages[0]["diff"]
    assert "+OK" in diff.messages[1]["diff"]


def test_rollback_creates_a_new_version_equal_to_the_old_one(user):
    make_text(text="v1 {{ who }}", user=user)  # a rollback is a write: alice owns the prompt
    services.prompt_update(name="greet", text="v2 {{ who }}", tags=["x"])
    prompt = services.prompt_rollback(name="greet", version=1, user=user)
    assert prompt.version == 3 and prompt.text == "v1 {{ who }}" and prompt.tags == []
    versions = selectors.list_versions(name="greet")
    assert [v.version for v in versions] == [3, 2, 1]
    assert versions[0].change_note == "Rollback to v1" and versions[0].author == "alice"
    assert versions[1].text == "v2 {{ who }}"  # history untouched
    assert selectors.compare_versions(name="greet", v1=1, v2=3).changed_fields == []
    with pytest.raises(PlatformError) as err:
        services.prompt_rollback(name="greet", version=9)
    assert err.value.code == "PROMPT_NOT_FOUND"


def test_point_in_time_reads_follow_label_moves(admin_user):
    t0 = timezone.now()
    make_text(text="first {{ who }}", labels=["production"])
    t1 = timezone.now()
    services.prompt_update(name="greet", text="second {{ who }}")
    t2 = timezone.now()
    services.label_move(name="greet", label="production", version=2, user=admin_user)
    t3 = timezone.now()
    services.prompt_update(name="greet", text="third {{ who }}")
    t4 = timezone.now()

    assert selectors.get_prompt_at(name="greet", label="production", when=t1).version == 1
    assert selectors.get_prompt_at(name="greet", label="production", when=t2).version == 1
    assert selectors.get_prompt_at(name="greet", label="production", when=t3).version == 2
    assert selectors.get_prompt_at(name="greet", label="production", when=t4).version == 2
    assert selectors.get_prompt_at(name="greet", label="latest", when=t2).version == 2
    assert selectors.get_prompt_at(name="greet", label="latest", when=t4).version == 3
    assert selectors.get_prompt_at(name="greet", label=None, when=t3).text == "second {{ who }}"
    with pytest.raises(PlatformError) as err:
        selectors.get_prompt_at(name="greet", label="production", when=t0 - timedelta(seconds=1))
    assert err.value.code == "PROMPT_NOT_FOUND"


def test_point_in_time_after_label_removed(admin_user):
    make_text(labels=["staging"])
    t1 = timezone.now()
    services.label_delete(name="greet", label="staging", user=admin_user)
    assert selectors.get_prompt_at(name="greet", label="staging", when=t1).version == 1
    with pytest.raises(PlatformError):
        selectors.get_prompt_at(name="greet", label="staging", when=timezone.now())


def test_delete_keeps_history_rows():
    from prompts.models import Prompt

    make_text()
    services.prompt_delete(name="greet")
    with pytest.raises(PlatformError) as err:
        selectors.get_prompt(name="greet")
    assert err.value.code == "PROMPT_NOT_FOUND"
    assert Prompt.history.filter(name="greet").count() == 2  # create + delete
