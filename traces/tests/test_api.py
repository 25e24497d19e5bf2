from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from agent_platform.observability.context import bind_caller
from agent_platform.observability.hooks import SpanKind, hub
from agent_platform.observability.spans import start_span
from tests.support.sinks import llm_record
from traces.models import Span, Trace

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def span_item(i: int, trace: str = "a" * 32, parent: str | None = None, **extra) -> dict:
    return {
        "trace_id": trace,
        "span_id": f"{i:016x}",
        "parent_span_id": parent,
        "kind": "llm" if i % 2 else "custom",
        "name": f"step {i}",
        "start_time": (T0 + timedelta(milliseconds=10 * i)).isoformat(),
        "end_time": (T0 + timedelta(milliseconds=10 * i + 5)).isoformat(),
        "input_tokens": 10,
        "output_tokens": 5,
        **extra,
    }


def test_ingest_stores_good_items_and_reports_bad_ones_by_index_and_field(key_client, user):
    batch = {
        "traces": [{"trace_id": "a" * 32, "name": "checkout", "session_id": "s-1", "tags": ["prod"]}],
        "spans": [
            span_item(1),
            span_item(2, parent=f"{1:016x}"),
            span_item(3, span_id="not-hex"),
            span_item(4, end_time=(T0 - timedelta(seconds=1)).isoformat()),
            span_item(5, kind="banana"),
            span_item(7, model="gpt-4o", provider="openai", cost="0.5"),
        ],
    }
    response = key_client.post("/api/v1/ingest/", batch, format="json")
    assert response.status_code == 207, response.content
    body = response.json()
    assert body["accepted"] == 4 and body["rejected"] == 3
    errors = {(e["index"], e["field"]) for e in body["errors"]}
    assert errors == {(2, "span_id"), (3, "end_time"), (4, "kind")}
    assert set(Span.objects.values_list("span_id", flat=True)) == {f"{i:016x}" for i in (1, 2, 7)}
    trace = Trace.objects.get(trace_id="a" * 32)
    assert trace.name == "checkout" and trace.session_id == "s-1" and trace.tags == ["prod"]
    assert trace.user_id == user.pk and trace.span_count == 3 and trace.source == "ingest"
    assert str(trace.cost) == "0.5000000000"

    from costs.models import CostRecord

    (cost_record,) = CostRecord.objects.all()  # the one LLM span with a model: its given cost, attributed
    assert cost_record.cost == Decimal("0.5") and cost_record.user_id == user.pk and cost_record.model == "gpt-4o"

    again = key_client.post("/api/v1/ingest/", batch, format="json")
    assert again.status_code == 207 and again.json()["accepted"] == 4
    assert Span.objects.count() == 3, "a repeated batch creates no duplicates"
    assert Trace.objects.get(trace_id="a" * 32).span_count == 3
    assert CostRecord.objects.count() == 1


def test_ingested_llm_spans_reach_the_cost_sink_through_the_hub_in_one_call(key_client, user, monkeypatch):
    from costs.observer import observer as cost_observer

    calls = []

    def on_ingested_llm_spans(spans, *, user_id):
        calls.append((spans, user_id))

    monkeypatch.setattr(cost_observer, "on_ingested_llm_spans", on_ingested_llm_spans)
    spans = [span_item(i, model="gpt-4o", provider="openai") for i in range(1, 7)]
    assert key_client.post("/api/v1/ingest/", {"spans": spans}, format="json").status_code == 200
    ((delivered, user_id),) = calls  # one batch per request, LLM spans only
    assert user_id == user.pk
    assert sorted(s["span_id"] for s in delivered) == [f"{i:016x}" for i in (1, 3, 5)]
    assert all(s["kind"] == "llm" and s["model"] == "gpt-4o" and s["cost"] is None for s in delivered)


def test_ingest_all_valid_is_200_and_all_invalid_is_422(key_client):
    ok = key_client.post("/api/v1/ingest/", {"spans": [span_item(1)]}, format="json")
    assert ok.status_code == 200 and ok.json() == {"accepted": 1, "rejected": 0, "errors": []}
    bad = key_client.post("/api/v1/ingest/", {"spans": [span_item(2, trace_id="xyz"), "nope"]}, format="json")
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "INGEST_INVALID"
    assert [(e["index"], e["field"]) for e in error["details"]["errors"]] == [(0, "trace_id"), (1, "item")]


@pytest.mark.parametrize(
    ("body", "field"),
    [([1, 2], "body"), ({"spans": "x"}, "spans"), ({}, "spans"), ({"spanz": []}, "spanz")],
)
def test_ingest_rejects_a_malformed_body(key_client, body, field):
    response = key_client.post("/api/v1/ingest/", body, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["field"] == field


def test_ingest_cannot_write_into_another_users_trace(key_client, other_user):
    Trace.objects.create(trace_id="b" * 32, user_id=other_user.pk, start_time=T0)
    response = key_client.post("/api/v1/ingest/", {"spans": [span_item(1, trace="b" * 32)]}, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["details"]["errors"][0]["field"] == "trace_id"
    assert not Span.objects.exists()


def test_ingest_needs_authentication(api_client):
    assert api_client.post("/api/v1/ingest/", {"spans": [span_item(1)]}, format="json").status_code == 401


def make_traces(user, other_user):
    with bind_caller(user_id=user.pk, agent_id=1, agent_slug="alpha"):
        with start_span(kind=SpanKind.AGENT_RUN, name="alpha run") as a:
            hub.emit_llm_call(llm_record(model="mock/fast"))
        with start_span(kind=SpanKind.AGENT_RUN, name="alpha failing") as b:
            b.set_error(code="TOOL_TIMEOUT", message="slow")
    with bind_caller(user_id=other_user.pk, agent_id=2), start_span(kind=SpanKind.AGENT_RUN, name="bob run") as c:
        hub.emit_llm_call(llm_record(model="mock/slow"))
    hub.flush()
    return a.trace_id, b.trace_id, c.trace_id


def test_trace_list_filters_and_only_shows_own_traces(key_client, user, other_user):
    a, b, _c = make_traces(user, other_user)
    ids = lambda r: [t["trace_id"] for t in r.json()["results"]]  # noqa: E731
    listed = key_client.get("/api/v1/traces/")
    assert listed.status_code == 200 and set(ids(listed)) == {a, b}
    assert ids(key_client.get("/api/v1/traces/?status=error")) == [b]
    assert ids(key_client.get("/api/v1/traces/?model=mock/fast")) == [a]
    assert ids(key_client.get("/api/v1/traces/?agent=alpha&status=ok")) == [a]
    assert ids(key_client.get("/api/v1/traces/?model=mock/slow")) == []  # bob's
    assert set(ids(key_client.get(f"/api/v1/traces/?user={other_user.pk}"))) == {a, b}  # not staff: ignored
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(key_client.get("/api/v1/traces/", {"since": future})) == []


def test_trace_list_pages_with_a_cursor(key_client, user):
    with bind_caller(user_id=user.pk):
        for i in range(5):
            with start_span(kind=SpanKind.CUSTOM, name=f"t{i}"):
                pass
    hub.flush()
    first = key_client.get("/api/v1/traces/?page_size=2").json()
    assert len(first["results"]) == 2 and first["next"]
    second = key_client.get(first["next"]).json()
    assert {t["trace_id"] for t in first["results"]}.isdisjoint(t["trace_id"] for t in second["results"])


def test_trace_list_bad_filter_is_422_naming_the_field(key_client):
    response = key_client.get("/api/v1/traces/?since=yesterday")
    assert response.status_code == 422
    assert "since" in response.json()["error"]["details"]["fields"]


def test_staff_see_every_trace_and_filter_by_user(api_client, admin_user, user, other_user):
    _a, _b, c = make_traces(user, other_user)
    api_client.force_authenticate(admin_user)
    assert len(api_client.get("/api/v1/traces/").json()["results"]) == 3
    assert [t["trace_id"] for t in api_client.get(f"/api/v1/traces/?user={other_user.pk}").json()["results"]] == [c]


def test_trace_detail_is_a_span_tree_and_hidden_from_others(key_client, user, other_user):
    a, _, c = make_traces(user, other_user)
    detail = key_client.get(f"/api/v1/traces/{a}/")
    assert detail.status_code == 200
    body = detail.json()
    assert body["name"] == "alpha run" and body["span_count"] == 2
    root, child = body["spans"]  # depth-first, with depths and parent ids
    assert root["kind"] == "agent_run" and root["depth"] == 0 and root["parent_span_id"] is None
    assert child["depth"] == 1 and child["parent_span_id"] == root["span_id"]
    assert child["kind"] == "llm" and child["model"] == "mock/fast" and child["input_tokens"] == 100
    assert child["cost"] is not None and child["input"][0]["role"] == "user"
    missing = key_client.get(f"/api/v1/traces/{c}/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "TRACE_NOT_FOUND"


def test_dashboard_trace_list_and_waterfall(client, user, other_user):
    a, _b, _ = make_traces(user, other_user)
    client.force_login(user)
    page = client.get("/dashboard/traces/?status=error")
    assert page.status_code == 200
    html = page.content.decode()
    assert "alpha failing" in html and "alpha run" not in html and "bob run" not in html
    detail = client.get(f"/dashboard/traces/{a}/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "llm mock/fast" in html and "What is 2+2?" in html and 'class="bar kind-llm' in html
    assert client.get("/dashboard/traces/?since=garbage").status_code == 200  # error shown, not a 500
    assert client.get("/dashboard/traces/" + "0" * 32 + "/").status_code == 404


def test_waterfall_of_a_thousand_spans_uses_constant_queries(client, user, django_assert_max_num_queries):
    from traces.services import spans_write

    trace_id = "c" * 32
    spans = [
        Span(
            span_id=f"{i:016x}",
            trace_id=trace_id,
            parent_span_id=None if i == 0 else f"{(i - 1) // 10:016x}",
            kind="custom",
            name=f"s{i}",
            start_time=T0 + timedelta(milliseconds=i),
            end_time=T0 + timedelta(milliseconds=i + 3),
            user_id=user.pk,
        )
        for i in range(1000)
    ]
    spans_write(spans=spans, trace_meta={trace_id: {"user_id": user.pk}})
    client.force_login(user)
    with django_assert_max_num_queries(6):
        response = client.get(f"/dashboard/traces/{trace_id}/")
    assert response.status_code == 200
    assert response.content.decode().count('class="bar ') == 1000


def test_a_very_deep_span_chain_renders_in_the_api_and_the_waterfall(client, key_client, user):
    from traces.services import spans_write

    trace_id = "d" * 32
    spans = [
        Span(span_id=f"{i + 1:016x}", trace_id=trace_id, parent_span_id=f"{i:016x}" if i else None, kind="custom",
             name=f"level {i}", start_time=T0 + timedelta(milliseconds=i), end_time=T0 + timedelta(seconds=2))
        for i in range(1500)
    ]  # fmt: skip
    spans_write(spans=spans, trace_meta={trace_id: {"user_id": user.pk}})
    body = key_client.get(f"/api/v1/traces/{trace_id}/").json()
    assert len(body["spans"]) == 1500 and body["spans"][-1]["depth"] == 1499
    client.force_login(user)
    assert client.get(f"/dashboard/traces/{trace_id}/").status_code == 200


class _Collector(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.received.append((self.path, self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(settings):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = HTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Collector.received = []
    try:
        settings.OTEL_EXPORTER_OTLP_ENDPOINT = f"http://127.0.0.1:{server.server_port}"
        with start_span(kind=SpanKind.AGENT_RUN, name="exported run") as run:
            hub.emit_llm_call(llm_record())
        hub.flush()
        from traces.observer import observer

        assert observer.last_export.result(timeout=10) is True
    finally:
        server.shutdown()
    assert len(_Collector.received) == 1
    path, payload = _Collector.received[0]
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(payload)
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert {s.name for s in spans} == {"exported run", "llm mock/demo"}
    assert all(s.trace_id.hex() == run.trace_id for s in spans)
    llm = next(s for s in spans if s.name.startswith("llm"))
    assert llm.parent_span_id.hex() == run.span_id
    assert any(a.key == "gen_ai.usage.input_tokens" and a.value.int_value == 100 for a in llm.attributes)
