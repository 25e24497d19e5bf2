"""The catalog loader command on good and bad files, and the demo loader."""

import json

import pytest
from django.core.management import CommandError, call_command

from agents.models import AgentDefinition

pytestmark = pytest.mark.django_db

GOOD_YAML = """
agents:
  - slug: summarizer
    name: Summarizer
    category: writing
    model_endpoint: mock/summarizer
    system_prompt_text: Summarize.
    tools: [current_time]
  - slug: mathematician
    name: Mathematician
    category: math
    model_endpoint: mock/math
    tools: [calculator]
    mode: plan
    max_iterations: 5
"""


def test_load_good_files_then_reload_idempotently(tmp_path, capsys):
    (tmp_path / "two.yaml").write_text(GOOD_YAML)
    (tmp_path / "one.json").write_text(json.dumps({"slug": "greeter", "name": "Greeter", "model_endpoint": "mock/g"}))
    (tmp_path / "notes.txt").write_text("ignored")
    call_command("load_agents", str(tmp_path))
    out = capsys.readouterr().out
    assert "3 created, 0 updated, 0 unchanged, 0 invalid" in out
    assert AgentDefinition.objects.get(slug="mathematician").mode == "plan"

    call_command("load_agents", str(tmp_path))
    assert "0 created, 0 updated, 3 unchanged" in capsys.readouterr().out

    (tmp_path / "one.json").write_text(json.dumps({"slug": "greeter", "name": "Greeter 2", "model_endpoint": "mock/g"}))
    call_command("load_agents", str(tmp_path))
    out = capsys.readouterr().out
    assert "updated   greeter" in out and "1 updated" in out
    assert AgentDefinition.objects.get(slug="greeter").name == "Greeter 2"
    assert AgentDefinition.objects.count() == 3


def test_bad_files_are_reported_with_file_and_field_and_good_ones_still_load(tmp_path, capsys):
    (tmp_path / "good.json").write_text(json.dumps({"slug": "ok", "name": "OK", "model_endpoint": "mock/ok"}))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "bad.yaml").write_text(
        "slug: bad\nname: Bad\nmodel_endpoint: mock/bad\ntools: [shell]\nmax_iterations: -1\n"
    )
    (tmp_path / "list.yml").write_text("- slug: fine\n  name: Fine\n  model_endpoint: mock/f\n- 42\n")
    with pytest.raises(CommandError, match="2 created, 0 updated, 0 unchanged, 3 invalid"):
        call_command("load_agents", str(tmp_path))
    err = capsys.readouterr().err
    assert "broken.json: (file): cannot parse" in err
    assert "bad.yaml (bad): tools: Unknown tool(s): shell" in err
    assert "bad.yaml (bad): max_iterations:" in err
    assert "list.yml[1]: (root): must be an object" in err
    assert set(AgentDefinition.objects.values_list("slug", flat=True)) == {"ok", "fine"}


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("load_agents", str(tmp_path / "nope"))


def test_load_demo_creates_demo_agents_on_mock_endpoints(capsys):
    call_command("load_demo")
    call_command("load_demo")  # idempotent
    agents = AgentDefinition.objects.filter(slug__in=["assistant", "helpdesk"])
    assert agents.count() == 2
    assert all(a.model_endpoint.startswith("mock/") for a in agents)
