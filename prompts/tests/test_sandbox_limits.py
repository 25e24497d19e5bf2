"""The sandbox's limits hold on what a template builds, at save time and while rendering, and a slow render never
stalls the server: payloads of a security probe and their siblings, through the render function and the API."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agent_platform.api.errors import PlatformError
from prompts import selectors, services
from prompts.models import Prompt
from prompts.sandbox import RenderLimits, compile_template, render_source

pytestmark = pytest.mark.django_db

BASE = "/api/v1/prompts/"


def render(text, variables=None, **kw):
    return selectors.render_preview(template_type="text", text=text, variables=variables, **kw)


def refusal(fn, *args, **kw) -> PlatformError:
    with pytest.raises(PlatformError) as err:
        fn(*args, **kw)
    return err.value


# --- what a render builds ------------------------------------------------------------------------------------------

# (payload, the limit that stops it). Each of these ran for seconds, or took hundreds of MB, before it was refused.
BUILD_BOMBS = [
    # the probe: a 10,000-item list of the same 10,000-item list, printed (11.4 s, +330 MB)
    ("{{ [[1]*10000]*10000 }}", "size"),
    ("{% set row = [1] * 10000 %}{{ [row] * 10000 }}", "size"),
    ("{% set row = [1] * 10000 %}{{ [row, row, row, row, row, row, row, row, row, row, row, row] }}", "size"),
    ("{% set row = [1] * 10000 %}{{ {'a': row, 'b': row, 'c': row, 'd': row} }}", "size"),
    ("{% set row = [1] * 10000 %}{{ (row, row, row, row) + (row, row, row, row) }}", "size"),
    ("{{ 'a' * 10**9 }}", "size"),
    ("{{ [0] * 10**8 }}", "size"),
    ("{{ 'x'.encode() * 10**9 }}", "size"),
    # big integers: refused by their size before they are computed
    ("{{ 9 ** (9 ** 9) }}", "size"),
    ("{{ (9 ** 99) ** (9 ** 9) }}", "size"),
    ("{% set ns = namespace(x=3) %}{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}{% endfor %}", "size"),
    ("{% set ns = namespace(x=3 ** 2000) %}{% for i in range(255) %}{% set ns.x = ns.x * ns.x %}{% endfor %}", "size"),
    ("{{ (1).to_bytes(10**9, 'big') }}", "size"),
    # filters that build: slice, batch, format, join, sum, replace, center, wordwrap, indent, tojson, map
    ("{{ [1]|slice(3000000)|join }}", "size"),
    ("{{ [1]|batch(10**9, 'x')|list }}", "size"),
    ("{{ range(10)|batch(10**9, 0)|first|length }}", "size"),
    ("{{ '%s%s'|format('x' * 60000, 'y' * 60000) }}", "size"),
    ("{% set row = range(10000)|list %}{{ '%s %s'|format(row, row) }}", "size"),
    ("{% set row = range(10000)|list %}{{ '%s' % [row, row] }}", "size"),
    ("{% set row = range(10000)|list %}{{ '{} {}'.format(row, row) }}", "size"),
    ("{% set row = [1] * 20000 %}{{ [row, row, row]|join }}", "size"),
    ("{{ range(10000)|batch(2)|list|sum(start=[])|length }}", "size"),
    ("{{ ('x'|safe).center(10**9) }}", "size"),
    ("{{ 'aaaa'.translate({97: 'x' * 60000}) }}", "size"),
    ("{{ dict.fromkeys(range(10000), 'x' * 100) }}", "size"),
    ("{{ range(10000)|map('center', 99999)|list|length }}", "size"),
    ("{{ {'a': 'x' * 20000}|tojson(64) }}", "size"),
    # the running total of one render: each string is allowed, all of them together are not
    ("{% for i in range(1000) %}{% set s = 'x' * 99999 %}{% endfor %}", "size"),
    # range nesting and loop products
    ("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", "iterations"),
    ("{% for a in range(10000) %}{% for b in range(10000) %}{% for c in range(10000) %}{% endfor %}{% endfor %}"
     "{% endfor %}", "iterations"),
    ("{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}{% set x = c %}"
     "{% endfor %}{% endfor %}{% endfor %}", "iterations"),
    ("{{ range(10**6)|list }}", "range"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "limit"), BUILD_BOMBS)
def test_what_a_template_builds_is_capped(payload, limit):
    err = refusal(render, payload)
    assert err.code == "PROMPT_RENDER_LIMIT", err.message
    assert err.details["limit"] == limit, err.message
    assert err.status == 422 and "stopped" in err.message


def test_the_running_total_is_per_render_not_per_value():
    """Ten strings of 99,999 characters are fine one at a time; the render's running total refuses the 51st."""
    limits = RenderLimits()
    assert render_source("{% for i in range(10) %}{% set s = 'x' * 99999 %}{% endfor %}ok", {}, limits=limits) == "ok"
    err = refusal(render_source, "{% for i in range(51) %}{% set s = 'x' * 99999 %}{% endfor %}", {}, limits=limits)
    assert err.details["limit"] == "size" and "in total" in err.message


@pytest.mark.parametrize(
    "payload",
    [
        "{% set x %}{% for i in range(10000) %}{{ doc }}{% endfor %}{% endset %}{{ x|length }}",
        "{% macro m() %}{% for i in range(10000) %}{{ doc }}{% endfor %}{% endmacro %}{{ m()|length }}",
        "{% macro m() %}{% for i in range(10000) %}" + "s" * 90000 + "{% endfor %}{% endmacro %}{{ m()|length }}",
        "{% filter length %}{% for i in range(10000) %}{{ doc }}{% endfor %}{% endfilter %}",
        "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}{% for i in range(10000) %}{{ doc }}{% endfor %}"
        "{% endcall %}",
    ],
)
def test_text_collected_outside_the_output_stream_counts(payload):
    """Macros, `{% set %}` blocks, `{% filter %}` and `caller()` join what they print into one string before it
    reaches the output's cap: 10,000 copies of a 99,000-character input would be a 1 GB string."""
    err = refusal(render, payload, {"doc": "d" * 99_000}, variables_schema=[{"name": "doc", "type": "string"}])
    assert err.code == "PROMPT_RENDER_LIMIT" and err.details["limit"] == "size" and "in total" in err.message


def test_the_size_cap_follows_the_setting(settings):
    settings.PROMPT_RENDER_MAX_CHARS = 1000
    assert render("{{ ([1] * 150)|length }}").text == "150"
    assert refusal(render, "{{ [[1] * 30] * 30 }}").details["limit"] == "size"  # 30 * ~90 printed characters


def test_a_spent_deadline_stops_the_first_tick_even_without_output():
    """The clock is read on every tick (it was read every 256th): a loop that prints nothing is stopped at once."""
    err = refusal(
        render_source, "{% for i in range(100) %}{% set x = i * i %}{% endfor %}", {}, limits=RenderLimits(timeout_s=0)
    )
    assert err.code == "PROMPT_RENDER_LIMIT" and err.details["limit"] == "time"


def test_inputs_are_weighed_before_they_are_printed():
    schema = [{"name": "rows", "type": "list"}]
    rows = [["x" * 100] * 100] * 20  # 200,000+ characters once printed
    err = refusal(render, "{{ rows }}", {"rows": rows}, variables_schema=schema)
    assert err.details["limit"] == "size"
    assert render("{{ rows|length }} {{ rows[0][0]|length }}", {"rows": rows}, variables_schema=schema).text == "20 100"


def test_reasonable_templates_still_work():
    schema = [{"name": "docs", "type": "list"}, {"name": "user", "type": "object"}]
    docs = [{"title": f"doc {i}", "text": "lorem ipsum " * 50, "score": i % 7} for i in range(200)]
    out = render(
        "{% set ranked = docs|sort(attribute='score', reverse=true) %}"
        "{% for d in ranked[:5] %}[{{ loop.index }}] {{ d.title }}: {{ d.text|truncate(40) }}\n{% endfor %}"
        "{% for row in range(12)|batch(5, '-') %}{{ row|join(',') }};{% endfor %}\n"
        "{% for a in range(50) %}{% for b in range(50) %}{% if a == b and a % 10 == 0 %}{{ a }}{% endif %}"
        "{% endfor %}{% endfor %}\n"
        "{{ {'user': user, 'n': docs|length}|tojson(2)|length > 10 }} {{ [1, 2] * 3 }} {{ 'ab' * 3 }} {{ 2 ** 64 }} "
        "{{ (docs|map(attribute='score')|list)|sum }} {{ '%-5s|' % 'x' }} {{ '{:>4}'.format(7) }} "
        "{{ [[1, 2], [3]]|sum(start=[]) }} {{ range(6)|slice(2)|list }}",
        {"docs": docs, "user": {"name": "Ada", "tags": ["a", "b"]}},
        variables_schema=schema,
    ).text
    lines = out.splitlines()
    assert lines[0].startswith("[1] doc ") and len(lines[0]) < 80
    assert lines[5] == "0,1,2,3,4;5,6,7,8,9;10,11,-,-,-;"
    assert lines[6] == "010203040"
    assert lines[7] == (
        "True [1, 2, 1, 2, 1, 2] ababab 18446744073709551616 594 x    |    7 [1, 2, 3] [[0, 1, 2], [3, 4, 5]]"
    )


# --- compile time: no constant folding, a deadline, a nesting cap ------------------------------------------------


def test_saving_a_prompt_does_not_run_its_filters():
    """Jinja folds constant filter calls at compile time (no deadline there): `[1]|slice(3000000)|join` took 6.7 s
    to save. Now nothing runs at save; the render refuses it within its limits."""
    for source in ("{{ [1]|slice(3000000)|join }}", "{{ 'x'|center(10**9) }}", "{{ 'ab' ~ ('x'|center(10**9)) }}"):
        compile_template(source)  # returns at once: nothing is evaluated
        assert refusal(render_source, source, {}).details["limit"] == "size"
    # A folded constant would be built once at compile time and never counted again; here each of the 60 passes
    # builds its 99,999 characters, and the render's running total refuses them.
    err = refusal(render_source, "{% for i in range(60) %}{% set s = 'x'|center(99999) %}{% endfor %}", {})
    assert err.details["limit"] == "size" and "in total" in err.message


def test_compiling_has_the_render_deadline(settings):
    settings.PROMPT_RENDER_TIMEOUT_MS = 1
    expression = "{{ x" + " + x" * 40 + " }}\n"  # ~40 nested calls: the code generator takes its time on each
    source = "".join(expression.replace("x", f"x{i % 7}", 1) for i in range(1000))
    err = refusal(services.prompt_create, name="slow-to-compile", text=source)
    assert err.code == "PROMPT_RENDER_LIMIT" and err.details["limit"] == "time" and err.details["field"] == "text"
    assert not Prompt.objects.filter(name="slow-to-compile").exists()


DEEP = [
    "{% if a %}" * 2000 + "x" + "{% endif %}" * 2000,
    "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}",
    "{{ " + "[" * 2000 + "]" * 2000 + " }}",
    "{{ " + "-" * 2000 + "1 }}",
    "{{ " + "not " * 2000 + "1 }}",
    "{{ 1" + " if 1 else 1" * 2000 + " }}",
    "{{ 1" + " + 1" * 2000 + " }}",
    "{{ 'x'" + "|upper" * 2000 + " }}",
    "{{ 'x'" + ".upper()" * 2000 + " }}",
    "{% set a %}" * 2000 + "{% endset %}" * 2000,
    "{% for a in [1] %}" * 25 + "{% endfor %}" * 25,  # Python allows 20 nested loops in one function
]


@pytest.mark.parametrize("source", DEEP, ids=[f"deep{i}" for i in range(len(DEEP))])
def test_deeply_nested_templates_are_refused_on_save(source):
    err = refusal(services.prompt_create, name="deep", text=source)
    assert err.code == "PROMPT_TEMPLATE_INVALID", err.message
    assert err.details["limit"] == "nesting" and err.details["field"] == "text"
    assert "deep" in err.message


def test_nesting_in_a_chat_message_names_the_message():
    messages = [{"role": "system", "content": "fine"}, {"role": "user", "content": "{% if a %}" * 2000}]
    err = refusal(services.prompt_create, name="deep", template_type="chat", messages=messages)
    assert err.code == "PROMPT_TEMPLATE_INVALID"
    assert err.details["field"] == "messages[1].content" and err.details["message_index"] == 1


def test_ordinary_nesting_is_allowed():
    source = "{% for a in [1] %}" * 8 + "{% if true %}" * 8 + "{{ ((((1 + 2) * 3) - 4) // 2) }}"
    source += "{% endif %}" * 8 + "{% endfor %}" * 8
    assert render(source).text == "2"


# --- the same through the API -------------------------------------------------------------------------------------

API_RENDER_BOMBS = [
    ("{{ [[1]*10000]*10000 }}", "size"),
    ("{% set ns = namespace(x=3 ** 2000) %}{% for i in range(255) %}{% set ns.x = ns.x * ns.x %}{% endfor %}", "size"),
    ("{{ [1]|slice(3000000)|join }}", "size"),
    ("{{ 'a' * 10**9 }}", "size"),
    ("{{ [0] * 10**8 }}", "size"),
    ("{{ 9 ** (9 ** 9) }}", "size"),
    ("{{ '%s%s'|format('x' * 60000, 'y' * 60000) }}", "size"),
    ("{{ [1]|batch(10**9, 'x')|list }}", "size"),
    ("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", "iterations"),
]


@pytest.mark.parametrize(("payload", "limit"), API_RENDER_BOMBS)
def test_api_saves_then_refuses_to_render_a_bomb(key_client, payload, limit):
    r = key_client.post(BASE, {"name": "bomb", "text": payload}, format="json")
    assert r.status_code == 201, r.content  # saved without running it
    r = key_client.post(f"{BASE}bomb/render/", {}, format="json")
    assert r.status_code == 422, r.content
    error = r.json()["error"]
    assert error["code"] == "PROMPT_RENDER_LIMIT" and error["details"]["limit"] == limit


@pytest.mark.parametrize("source", DEEP[:3] + DEEP[6:7], ids=["if", "parens", "brackets", "plus-chain"])
def test_api_refuses_deeply_nested_templates_on_create(key_client, source):
    r = key_client.post(BASE, {"name": "deep", "text": source}, format="json")
    assert r.status_code == 422, r.content
    error = r.json()["error"]
    assert error["code"] == "PROMPT_TEMPLATE_INVALID" and error["details"]["field"] == "text"
    assert key_client.get(f"{BASE}deep/").status_code == 404  # nothing half-written


def test_api_refuses_a_template_that_compiles_too_slowly(key_client, settings):
    settings.PROMPT_RENDER_TIMEOUT_MS = 1
    source = "".join(("{{ x" + " + x" * 40 + " }}\n").replace("x", f"y{i % 5}", 1) for i in range(1000))
    r = key_client.post(BASE, {"name": "slow", "text": source}, format="json")
    assert r.status_code == 422, r.content
    assert r.json()["error"]["code"] == "PROMPT_RENDER_LIMIT"
    assert r.json()["error"]["details"] == {"field": "text", "limit": "time", "stage": "compile"}


def test_api_refuses_a_template_too_big_to_compile_at_once(key_client, settings):
    """Python's compile() holds the GIL for ~1 s per MB of generated code and cannot be interrupted: the generated
    code is capped before it is compiled (long static text does not count)."""
    settings.PROMPT_RENDER_TIMEOUT_MS = 120_000  # only the size cap applies
    r = key_client.post(BASE, {"name": "huge", "text": "{{ x }}" * 5000}, format="json")
    assert r.status_code == 422, r.content
    error = r.json()["error"]
    assert error["code"] == "PROMPT_TEMPLATE_INVALID" and error["details"]["limit"] == "complexity"
    assert error["details"]["field"] == "text"
    r = key_client.post(BASE, {"name": "long-text", "text": "word " * 39_000 + "{{ x }}" * 100}, format="json")
    assert r.status_code == 201, r.content


# --- a slow render does not stall the server ----------------------------------------------------------------------

SLOW = "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}done"


@pytest.fixture
def slow_render_allowed(settings):
    settings.PROMPT_RENDER_TIMEOUT_MS = 120_000
    settings.PROMPT_RENDER_MAX_ITERATIONS = 10**7


@pytest.fixture
def render_started(monkeypatch):
    """Set when the render of a prompt begins (wraps the real render function, which then runs as usual)."""
    started = threading.Event()
    real = render_source

    def observed(*args, **kwargs):
        started.set()
        return real(*args, **kwargs)

    monkeypatch.setattr("prompts.selectors.rendering.render_source", observed)
    return started


async def _wait_for(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.005)


@pytest.mark.django_db(transaction=True)
async def test_arender_prompt_leaves_the_event_loop_free(slow_render_allowed, render_started):
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(services.prompt_create)(name="slow", text=SLOW)
    finished: list[str] = []

    async def render_it():
        rendered = await selectors.arender_prompt("slow")
        finished.append("render")
        return rendered

    async def other_work():
        await _wait_for(render_started)
        for _ in range(5):
            await asyncio.sleep(0)
        finished.append("other coroutine")

    rendered, _ = await asyncio.gather(render_it(), other_work())
    assert rendered.text == "done"
    assert finished == ["other coroutine", "render"]
    await sync_to_async(connections.close_all)()
