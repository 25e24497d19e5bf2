"""Built-in tools and the registry: safe calculator, time, prompt lookup, registration by sites."""

import pytest
from asgiref.sync import async_to_sync

from agent_platform.api.errors import PlatformError
from agents.tools import Tool, ToolContext, execute_tool, registry
from agents.tools.builtins import safe_eval
from agents.tools.registry import ToolRegistry


def run_tool(name, arguments, allowed=None, **context):
    return async_to_sync(execute_tool)(
        name=name, arguments=arguments, allowed=allowed or [name], context=ToolContext(agent_slug="t", **context)
    )


@pytest.mark.parametrize(
    ("expression", "value"),
    [("2+3*4", 14), ("(2+3)*4", 20), ("2**10", 1024), ("7/2", 3.5), ("-3 + sqrt(16)", 1), ("round(pi, 2)", 3.14)],
)
def test_calculator_evaluates_arithmetic(expression, value):
    assert safe_eval(expression) == value


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('id')", "open('/etc/passwd')", "(1).__class__", "[1,2]", "a", "9**9**9", "'x' * 3"],
)
def test_calculator_refuses_anything_but_arithmetic(expression):
    outcome = run_tool("calculator", {"expression": expression})
    assert not outcome.ok and outcome.error_code == "TOOL_EXECUTION_FAILED"


def test_current_time_in_a_zone_and_an_unknown_zone():
    assert run_tool("current_time", {"timezone": "Europe/Paris"}).result["iso"][-6:] in ("+01:00", "+02:00")
    outcome = run_tool("current_time", {"timezone": "Mars/Olympus"})
    assert not outcome.ok and "unknown time zone" in outcome.error_message


@pytest.mark.django_db
def test_prompt_lookup_renders_a_stored_prompt_and_reports_a_missing_one():
    from prompts.services import prompt_create

    prompt_create(name="greeting", text="Hello {{ who }}!", labels=["production"])
    outcome = run_tool("prompt_lookup", {"name": "greeting", "variables": {"who": "Ada"}})
    assert outcome.ok and outcome.result["text"] == "Hello Ada!" and outcome.result["version"] == 1
    outcome = run_tool("prompt_lookup", {"name": "nope"})
    assert not outcome.ok and outcome.error_code == "PROMPT_NOT_FOUND"


def test_call_agent_refuses_to_call_itself_and_beyond_the_depth_limit():
    async def never(slug, text):
        raise AssertionError("must not be called")

    outcome = run_tool("call_agent", {"agent": "t", "input": "hi"}, call_agent=never)
    assert not outcome.ok and "itself" in outcome.error_message
    outcome = run_tool("call_agent", {"agent": "other", "input": "hi"}, call_agent=never, depth=3)
    assert not outcome.ok and outcome.error_code == "RUN_LIMIT_EXCEEDED"


def test_a_site_registers_its_own_tool_class():
    class Shout(Tool):
        name = "shout"
        description = "Upper-cases text."
        parameters = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}

        def run(self, arguments, context):  # a plain (sync) tool runs in a thread
            return arguments["text"].upper()

    reg = ToolRegistry()
    reg.register(Shout)
    outcome = async_to_sync(execute_tool)(
        name="shout", arguments='{"text": "hi"}', allowed=["shout"], context=ToolContext(), tool_registry=reg
    )
    assert outcome.ok and outcome.result == "HI"
    assert reg.specs(["shout"])[0]["function"]["parameters"]["required"] == ["text"]
    with pytest.raises(PlatformError) as exc:
        reg.get("missing")
    assert exc.value.code == "TOOL_NOT_FOUND"


def test_a_tool_with_an_invalid_schema_cannot_be_registered():
    class Broken(Tool):
        name = "broken"
        parameters = {"type": "no-such-type"}

    with pytest.raises(Exception, match="no-such-type"):
        ToolRegistry().register(Broken)


def test_tools_named_in_the_agent_tools_setting_are_registered(settings):
    from django.apps import apps

    settings.AGENT_TOOLS = ["agents.tests.sample_tools.Echo"]
    apps.get_app_config("agents").ready()
    try:
        assert registry.has("echo")
    finally:
        registry.unregister("echo")
