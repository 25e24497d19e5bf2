"""Rendering: text and chat, variable checks, syntax errors with locations, sandbox escapes, output/time bombs."""

from __future__ import annotations

import pytest
from django.conf import settings

from agent_platform.api.errors import PlatformError
from prompts import selectors, services
from prompts.sandbox import RenderLimits, render_source

pytestmark = pytest.mark.django_db


def render(text, variables=None, schema=None, **kw):
    return selectors.render_preview(template_type="text", text=text, variables_schema=schema, variables=variables, **kw)


def error_of(fn, *args, **kw) -> PlatformError:
    with pytest.raises(PlatformError) as err:
        fn(*args, **kw)
    return err.value


# --- happy paths ------------------------------------------------------------------------------------------------


def test_text_prompt_renders_with_defaults_and_types():
    services.prompt_create(
        name="sum",
        text="Summarize in {{ n }} bullets{% if formal %}, formally{% endif %}:\n"
        "{% for d in docs %}- {{ d }}\n{% endfor %}",
        variables=[
            {"name": "n", "type": "integer", "default": 3},
            {"name": "formal", "type": "boolean", "required": False},
            {"name": "docs", "type": "list"},
        ],
        model_endpoint="mock-chat",
        params={"temperature": 0},
    )
    out = selectors.render_prompt("sum", {"docs": ["a", "b"]})
    assert out.text == "Summarize in 3 bullets:\n- a\n- b\n"
    assert (out.name, out.version, out.model_endpoint, out.params) == ("sum", 1, "mock-chat", {"temperature": 0})
    assert out.messages is None
    assert selectors.render_prompt("sum", {"docs": [], "n": 5, "formal": True}).text.startswith(
        "Summarize in 5 bullets, formally"
    )


def test_chat_prompt_renders_every_message():
    services.prompt_create(
        name="chat",
        template_type="chat",
        messages=[
            {"role": "system", "content": "You are {{ bot }}."},
            {"role": "user", "content": "{{ question }}"},
        ],
        labels=["production"],
    )
    out = selectors.render_prompt("chat", {"bot": "Ada", "question": "2+2?"})
    assert out.messages == [{"role": "system", "content": "You are Ada."}, {"role": "user", "content": "2+2?"}]
    assert out.text is None and out.label == "production"


def test_use_prompt_binds_name_version_to_the_caller():
    from agent_platform.observability.context import current_caller

    services.prompt_create(name="p", text="x")
    rendered = selectors.render_prompt("p")
    with selectors.use_prompt(rendered):
        assert current_caller().prompt_name == "p" and current_caller().prompt_version == 1
    assert current_caller().prompt_name is None


def test_undeclared_values_never_reach_the_template():
    assert render("{{ a }}", {"a": "x", "b": "y"}).text == "x"


# --- variable errors ---------------------------------------------------------------------------------------------


def test_missing_required_variable_is_named():
    err = error_of(render, "Hi {{ who }} {{ when }}", {"who": "x"})
    assert err.code == "PROMPT_VARIABLE_MISSING" and err.details["variable"] == "when"
    assert "when" in err.message and err.status == 422


def test_wrong_type_is_named():
    schema = [{"name": "n", "type": "integer"}]
    err = error_of(render, "{{ n }}", {"n": "3"}, schema)
    assert err.code == "PROMPT_VARIABLE_INVALID" and err.details == {
        "variable": "n",
        "expected": "integer",
        "got": "string",
        "field": "n",
    }
    assert error_of(render, "{{ n }}", {"n": True}, schema).code == "PROMPT_VARIABLE_INVALID"
    for kind, good, bad in (("number", 1.5, "1"), ("boolean", False, 0), ("list", [1], {}), ("object", {}, [1])):
        schema = [{"name": "v", "type": kind}]
        assert render("{{ v }}", {"v": good}, schema).text is not None
        assert error_of(render, "{{ v }}", {"v": bad}, schema).code == "PROMPT_VARIABLE_INVALID"


def test_missing_attribute_of_a_variable_is_reported():
    err = error_of(render, "{{ user.name }}", {"user": {}}, [{"name": "user", "type": "object"}])
    assert err.code == "PROMPT_VARIABLE_MISSING"


def test_schema_is_validated_on_save():
    for schema, field in (
        ([{"name": "1x"}], "variables[0].name"),
        ([{"name": "x", "type": "date"}], "variables[0].type"),
        ([{"name": "x", "type": "integer", "default": "1"}], "variables[0].default"),
        ([{"name": "x"}, {"name": "x"}], "variables[1].name"),
        ([{"name": "x", "secret": 1}], "variables[0]"),
        ({"name": "x"}, "variables"),
    ):
        err = error_of(services.prompt_create, name="p", text="{{ x }}", variables=schema)
        assert err.code == "VALIDATION_ERROR" and err.details["field"] == field


# --- syntax errors with location ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        ("Hello\n{{ name + }}", 2, 11),
        ("{% for x in items %}\n{{ x }}", 2, 8),
        ("ok\nok {{ x | nosuchfilter }}", 2, 11),
        ("a\nb\n  {% endfor %}", 3, 6),
        ("{{ 'unclosed }}", 1, 4),
    ],
)
def test_syntax_errors_carry_line_and_column(source, line, column):
    err = error_of(services.prompt_create, name="p", text=source)
    assert err.code == "PROMPT_TEMPLATE_INVALID"
    assert (err.details["line"], err.details["column"]) == (line, column), err.details
    assert f"line {line}, column {column}" in err.message


def test_syntax_error_in_a_chat_message_names_the_message():
    err = error_of(
        services.prompt_create,
        name="p",
        template_type="chat",
        messages=[{"role": "system", "content": "fine"}, {"role": "user", "content": "x\n{% if %}"}],
    )
    assert err.code == "PROMPT_TEMPLATE_INVALID"
    assert err.details["message_index"] == 1 and err.details["role"] == "user" and err.details["line"] == 2
    assert "messages[1]" in err.message


def test_chat_message_shape_is_validated():
    for messages, field in (
        ([], "messages"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": 3}], "messages[0].content"),
        ([{"role": "user", "content": "x", "name": "y"}], "messages[0]"),
    ):
        err = error_of(services.prompt_create, name="p", template_type="chat", messages=messages)
        assert err.code == "VALIDATION_ERROR" and err.details["field"] == field


def test_runtime_errors_are_template_errors_not_500():
    err = error_of(render, "{{ 1 / n }}", {"n": 0}, [{"name": "n", "type": "integer"}])
    assert err.code == "PROMPT_TEMPLATE_INVALID" and "ZeroDivisionError" in err.message


# --- sandbox escapes ---------------------------------------------------------------------------------------------

# Published Jinja2 SSTI / sandbox-escape payloads (PayloadsAllTheThings, HackTricks, CVE-2016-10745,
# CVE-2019-10906, CVE-2024-56326 / -56201, CVE-2025-27516 (|attr → str.format)).
ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__()[40]('/etc/passwd').read() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ lipsum.__globals__.__builtins__.__import__('os').popen('id').read() }}",
    "{{ range.__globals__ }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ (''|attr('__class__')|attr('__base__')|attr('__subclasses__'))() }}",
    "{{ ''['__class__']['__mro__'] }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ '{a.__class__}'.format_map({'a': ''}) }}",
    "{{ '{0.__globals__}'.format(cycler.__init__) }}",
    "{{ ''.format.__self__ }}",
    "{{ ('{0.__class__}'|attr('format'))('') }}",
    "{{ 'x'|attr('format_map') }}{{ ('{x.__class__}'|attr('format_map'))({'x': 1}) }}",
    "{% set f = '{0.__class__}'.format %}{{ f('') }}",
    "{{ dict.__class__ }}",
    "{{ dict.mro() }}",
    "{% set x = namespace() %}{{ x.__class__.__init__.__globals__ }}",
    "{{ (1).__class__.__subclasses__() }}",
    "{{ [].pop.__self__ }}",
    "{{ {}.__class__.__subclasses__() }}",
    "{{ loop.__class__ }}{% for i in [1] %}{{ loop.__class__ }}{% endfor %}",
    "{{ [1,2]|map(attribute='__class__')|list }}",
    "{{ [''] | selectattr('__class__') | list }}",
    "{{ ''|attr('__class__')|attr('__init__')|attr('__globals__') }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_published_sandbox_escapes_are_blocked(payload):
    with pytest.raises(PlatformError) as err:
        render(payload, {})
    assert err.value.code in ("PROMPT_SANDBOX_VIOLATION", "PROMPT_TEMPLATE_INVALID", "PROMPT_VARIABLE_MISSING")
    assert "root:" not in err.value.message and "uid=" not in err.value.message
    assert settings.SECRET_KEY not in err.value.message
    assert "<class" not in err.value.message


def test_escape_attempts_hit_the_sandbox_itself():
    """The attribute walks are stopped by the sandbox (not by chance, e.g. an undefined name)."""
    for payload in ESCAPES:
        with pytest.raises(PlatformError) as err:
            render(payload, {})
        assert err.value.code == "PROMPT_SANDBOX_VIOLATION", payload


@pytest.mark.parametrize(
    "probe", ["{{ config }}", "{{ request }}", "{{ settings.SECRET_KEY }}", "{{ self }}{{ config.items() }}"]
)
def test_django_objects_are_not_in_the_context(probe):
    with pytest.raises(PlatformError) as err:
        render(probe, {})
    assert err.value.code in ("PROMPT_VARIABLE_MISSING",)
    assert settings.SECRET_KEY not in err.value.message


def test_a_variable_value_cannot_be_used_to_escape():
    err = error_of(render, "{{ v.__class__ }}", {"v": "x"}, [{"name": "v", "type": "string"}])
    assert err.code == "PROMPT_SANDBOX_VIOLATION"
    err = error_of(render, "{{ v.format }}{{ v.format(v) }}", {"v": "{0.__class__}"}, [{"name": "v", "type": "string"}])
    assert err.code == "PROMPT_SANDBOX_VIOLATION"


def test_underscore_keys_of_input_objects_still_work():
    schema = [{"name": "doc", "type": "object"}]
    assert render("{{ doc._id }}/{{ doc['_id'] }}", {"doc": {"_id": 7}}, schema).text == "7/7"
    assert error_of(render, "{{ doc._nope }}", {"doc": {}}, schema).code == "PROMPT_SANDBOX_VIOLATION"


def test_immutable_sandbox_forbids_mutating_inputs():
    err = error_of(render, "{{ xs.append(1) }}", {"xs": []}, [{"name": "xs", "type": "list"}])
    assert err.code == "PROMPT_SANDBOX_VIOLATION"


# --- output-size and time bombs -----------------------------------------------------------------------------------

BOMBS = [
    ("{{ 'x' * 100000000 }}", "size"),
    ("{{ 100000000 * 'x' }}", "size"),
    ("{{ ['x'] * 100000000 }}", "size"),
    ("{% for i in range(100000000) %}{% endfor %}", "range"),
    ("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", "size"),
    ("{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}", "iterations"),
    ("{% for a in 'x' * 9999 %}{% for b in 'x' * 9999 %}{% endfor %}{% endfor %}", "iterations"),
    ("{{ 'x'.center(1000000000) }}", "size"),
    ("{{ 'x'.ljust(1000000000) }}", "size"),
    ("{{ 'x'|center(1000000000) }}", "size"),
    ("{{ ('\\t' * 10000).expandtabs(100000) }}", "size"),
    ("{{ ('x' * 10000).replace('x', 'y' * 10000) }}", "size"),
    ("{{ ('x' * 10000)|replace('x', 'y' * 10000) }}", "size"),
    ("{{ range(10000)|join('y' * 10000) }}", "size"),
    ("{{ ('y' * 10000).join(['a'] * 10000) }}", "size"),
    ("{{ ('a\\n' * 10000)|indent(10000) }}", "size"),
    ("{{ '%999999999d' % 1 }}", "size"),
    ("{{ '%*d' % (999999999, 1) }}", "size"),
    ("{{ '{:>999999999}'.format(1) }}", "size"),
    ("{{ '{:>{w}}'.format(1, w=999999999) }}", "size"),
    ("{{ '%999999999s'|format(1) }}", "size"),
    ("{{ 2 ** 100000000 }}", "size"),
    ("{{ 7 ** 99 ** 99 }}", "size"),
    ("{{ lipsum(100000) }}", "size"),
    (
        "{% set s = 'xxxxxxxxxx' %}" + "{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}" * 6 + "{{ s|length }}",
        "size",
    ),
    ("{% set s = 'xxxxxxxxxx' %}" + "{% set s = s + s + s + s + s + s + s + s + s + s %}" * 6, "size"),
    ("{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}", None),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", None),
]


@pytest.mark.parametrize(("payload", "limit"), BOMBS)
def test_output_and_time_bombs_are_stopped(payload, limit):
    with pytest.raises(PlatformError) as err:
        render(payload, {})
    assert err.value.code == "PROMPT_RENDER_LIMIT", err.value.message
    if limit:
        assert err.value.details["limit"] == limit
    assert "stopped" in err.value.message


def test_output_cap_applies_to_variable_values_too():
    limits = RenderLimits(max_chars=1000)
    with pytest.raises(PlatformError) as err:
        render_source("{{ v }}{{ v }}", {"v": "x" * 600}, limits=limits)
    assert err.value.code == "PROMPT_RENDER_LIMIT"
    assert render_source("{{ v }}", {"v": "x" * 600}, limits=limits) == "x" * 600


def test_time_limit():
    limits = RenderLimits(timeout_s=0.05, max_iterations=10**9, max_range=10**6)
    with pytest.raises(PlatformError) as err:
        render_source(
            "{% for a in range(1000000) %}{% for b in range(1000000) %}{% endfor %}{% endfor %}", {}, limits=limits
        )
    assert err.value.code == "PROMPT_RENDER_LIMIT" and err.value.details["limit"] == "time"


def test_reasonable_templates_still_work():
    out = render(
        "{% for i in range(100) %}{{ '%03d' % i }}{{ ' ' * 2 }}{% endfor %}{{ 'ab'.upper() }}{{ [1,2]|join(',') }}"
        "{{ '{:>5}'.format('x') }}{{ 'a'|center(5) }}{{ 2 ** 10 }}{{ 'x' ~ 'y' }}",
        {},
    )
    assert out.text.startswith("000  001  ") and out.text.endswith("AB1,2    x  a  1024xy")


def test_include_extends_import_are_refused_on_save():
    for source, keyword in (
        ("{% include 'x.txt' %}", "include"),
        ("a\n  {% extends 'base' %}", "extends"),
        ("{% import 'm' as m %}", "import"),
        ("{% from 'm' import f %}", "from"),
    ):
        err = error_of(services.prompt_create, name="p", text=source)
        assert err.code == "PROMPT_TEMPLATE_INVALID" and keyword in err.message
    err = error_of(services.prompt_create, name="p", text="a\n  {% extends 'base' %}")
    assert (err.details["line"], err.details["column"]) == (2, 6)


def test_loop_variables_are_inferred_as_lists():
    prompt = services.prompt_create(name="p", text="{% for d in docs %}{{ d }}{% endfor %}{{ title }}")
    assert prompt.variables == [
        {"name": "docs", "type": "list", "required": True},
        {"name": "title", "type": "string", "required": True},
    ]
    assert selectors.render_prompt("p", {"docs": ["a", "b"], "title": "!"}).text == "ab!"


def test_chat_messages_share_one_budget():
    from prompts.sandbox import RenderLimits

    services.prompt_create(
        name="p",
        template_type="chat",
        messages=[{"role": "system", "content": "{{ v }}"}, {"role": "user", "content": "{{ v }}"}],
    )
    pv = selectors.get_prompt(name="p")
    assert selectors.render_version(pv, {"v": "x" * 600}, limits=RenderLimits(max_chars=1500)).messages
    with pytest.raises(PlatformError) as err:
        selectors.render_version(pv, {"v": "x" * 600}, limits=RenderLimits(max_chars=1000))
    assert err.value.code == "PROMPT_RENDER_LIMIT" and err.value.details["message_index"] == 1


def test_too_many_messages():
    messages = [{"role": "user", "content": "x"}] * 101
    err = error_of(services.prompt_create, name="p", template_type="chat", messages=messages)
    assert err.code == "VALIDATION_ERROR" and err.details["field"] == "messages"


@pytest.mark.django_db(transaction=True)
async def test_arender_prompt_from_async_code():
    from asgiref.sync import sync_to_async

    await sync_to_async(services.prompt_create)(name="p", text="Hi {{ who }}")
    cold = await selectors.arender_prompt("p", {"who": "Ada"})  # a miss: loaded in a worker thread
    warm = await selectors.arender_prompt("p", {"who": "Bob"})  # a hit: no database
    assert (cold.text, warm.text) == ("Hi Ada", "Hi Bob")
    from django.db import connections

    await sync_to_async(connections.close_all)()  # the worker thread's connection


def test_spans_inside_use_prompt_record_the_prompt_version():
    from agent_platform.observability.hooks import Observer, SpanKind, hub
    from agent_platform.observability.spans import start_span

    class Collect(Observer):
        def __init__(self):
            self.spans = []

        def on_span(self, record):
            self.spans.append(record)

    services.prompt_create(name="p", text="x")
    services.prompt_update(name="p", text="y")
    collector = Collect()
    hub.register(collector)
    try:
        with selectors.use_prompt(selectors.render_prompt("p")), start_span(kind=SpanKind.LLM, name="call"):
            pass
    finally:
        hub.unregister(collector)
        hub.flush()  # other sinks (traces) write their buffers while the test database exists
    caller = collector.spans[-1].caller
    assert (caller.prompt_name, caller.prompt_version) == ("p", 2)
