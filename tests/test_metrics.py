"""Product metrics on /metrics: a run and its LLM calls move the series; queue and budget gauges read the database
at scrape time; the endpoint is gated by a bearer token or an allowed network."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agent_platform.observability.hooks import hub
from tests.test_settings_and_startup import production_env, run

pytestmark = pytest.mark.django_db


def scrape(client, **extra) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:300]
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when there is none yet)."""
    wanted = set(labels.items())
    return sum(v for (sample, sample_labels), v in samples.items() if sample == name and wanted <= sample_labels)


@pytest.fixture
def eager_runs(settings):
    from agent_platform.celery import app

    previous = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


def test_a_mock_model_run_and_its_llm_calls_move_the_series(client, key_client, eager_runs):
    from agent_platform.llm.mock import mock_provider_for
    from agents.services import agent_create

    scripted = mock_provider_for("mock/scripted")
    scripted.reset()
    agent_create(
        data={"slug": "metered", "name": "Metered", "model_endpoint": "mock/scripted", "system_prompt_text": "Hi."},
        owner=None,
    )
    before = scrape(client)
    scripted.queue_response(content="first answer")
    response = key_client.post("/api/v1/agents/metered/runs/", {"input": "hello", "wait": True}, format="json")
    assert response.status_code in (200, 201), response.content
    hub.flush()  # the request's own flush ran already; this prices anything an in-process run left buffered
    after = scrape(client)
    scripted.reset()

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("agent_platform_agent_runs_total", agent="metered", status="succeeded") == 1
    assert moved("agent_platform_agent_run_duration_seconds_count", agent="metered") == 1
    assert moved("agent_platform_llm_calls_total", endpoint="mock/scripted", status="ok") == 1
    assert moved("agent_platform_llm_tokens_total", endpoint="mock/scripted", kind="input") > 0
    assert moved("agent_platform_llm_tokens_total", endpoint="mock/scripted", kind="output") > 0
    assert moved("agent_platform_llm_cost_usd_total", endpoint="mock/scripted") > 0
    # django_prometheus's series are still served beside ours
    assert value(after, "django_http_requests_before_middlewares_total") > 0


def test_a_failed_streamed_llm_call_counts_as_an_error_with_its_time_to_first_token(client):
    from tests.support.sinks import llm_record

    before = scrape(client)
    record = llm_record(model="acme/chat", provider="acme", status="error", cached_tokens=7, billable=False)
    record.time_to_first_token_ms = 250.0
    hub.emit_llm_call(record)
    after = scrape(client)
    assert (
        value(after, "agent_platform_llm_calls_total", endpoint="acme/chat", status="error")
        - value(before, "agent_platform_llm_calls_total", endpoint="acme/chat", status="error")
        == 1
    )
    ttft = "agent_platform_llm_time_to_first_token_seconds"
    assert (
        value(after, f"{ttft}_count", endpoint="acme/chat") - value(before, f"{ttft}_count", endpoint="acme/chat") == 1
    )
    assert (
        value(after, f"{ttft}_sum", endpoint="acme/chat") - value(before, f"{ttft}_sum", endpoint="acme/chat") == 0.25
    )
    kind = {"endpoint": "acme/chat", "kind": "cached_read"}
    assert (
        value(after, "agent_platform_llm_tokens_total", **kind)
        - value(before, "agent_platform_llm_tokens_total", **kind)
        == 7
    )


def test_queue_and_budget_gauges_are_read_from_the_database_at_scrape(client):
    from agents.models import Run, RunStatus
    from agents.services import agent_create
    from costs.models import Budget

    assert value(scrape(client), "agent_platform_runs_queued") == 0
    agent = agent_create(
        data={"slug": "waiting", "name": "W", "model_endpoint": "mock/scripted", "system_prompt_text": "x"}, owner=None
    )
    for _ in range(2):
        Run.objects.create(agent=agent, status=RunStatus.QUEUED, input="hi")
    Run.objects.filter(agent=agent).update(created_at=timezone.now() - timedelta(minutes=10))
    Budget.objects.create(name="team-a", scope="team", scope_id=1, limit=Decimal("10"), spent=Decimal("2.5"))
    samples = scrape(client)
    assert value(samples, "agent_platform_runs_queued") == 2
    assert value(samples, "agent_platform_oldest_queued_run_age_seconds") >= 600
    assert value(samples, "agent_platform_budget_spend_ratio", budget="team-a", scope="team") == 0.25


def test_the_reaper_counts_the_runs_it_re_queues(client, user, eager_runs):
    from agent_platform.llm.mock import mock_provider_for
    from agents import services
    from agents.models import Run, RunStatus

    scripted = mock_provider_for("mock/scripted")
    scripted.reset()
    scripted.queue_response(content="done at last")
    agent = services.agent_create(
        data={"slug": "fragile", "name": "F", "model_endpoint": "mock/scripted", "system_prompt_text": "x"}, owner=None
    )
    run = services.run_create(agent=agent, input="hello", user=user)
    stale = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(id=run.id).update(status=RunStatus.RUNNING, attempts=1, heartbeat_at=stale, started_at=stale)
    before = value(scrape(client), "agent_platform_runs_requeued_total")
    assert services.runs_reap_stale(stale_after=timedelta(seconds=60))["requeued"] == 1
    scripted.reset()
    assert value(scrape(client), "agent_platform_runs_requeued_total") - before == 1


def test_the_broker_queue_length_is_read_from_redis_at_scrape(client, settings):
    import secrets

    import redis

    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs REDIS_URL (a Redis broker)")
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_TASK_DEFAULT_QUEUE = queue = f"test-metrics-{secrets.token_hex(4)}"  # a queue no worker reads
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        broker.rpush(queue, "a", "b")
        broker.rpush(f"{queue}\x06\x163", "c")  # kombu's list for priority 3
        assert value(scrape(client), "agent_platform_broker_queue_length") == 3
    finally:
        broker.delete(queue, f"{queue}\x06\x163")
        broker.close()


def test_metrics_behind_a_bearer_token(client, settings):
    settings.METRICS_TOKEN = "scrape-secret-0123456789"
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret-0123456789").status_code == 200


def test_metrics_behind_an_allowed_network(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "::1/128"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    forbidden = client.get("/metrics", REMOTE_ADDR="192.0.2.7")
    assert forbidden.status_code == 403 and b"agent_platform" not in forbidden.content


def test_production_defaults_to_loopback_only_and_development_is_open():
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.METRICS_ALLOWED_NETWORKS))"
    )
    assert json.loads(probe_output(code, **production_env())) == ["127.0.0.1/32", "::1/128"]
    assert json.loads(probe_output(code)) == []


def test_a_malformed_allowed_network_is_refused_at_start():
    result = run(["manage.py", "check"], METRICS_ALLOWED_NETWORKS="10.0.0.0/8,intranet")
    assert result.returncode != 0 and "METRICS_ALLOWED_NETWORKS entry 'intranet'" in result.stderr


def probe_output(code: str, **env: str) -> str:
    result = run(["-c", code], **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_multiprocess_mode_sums_the_counters_of_every_process(tmp_path):
    # two processes (say a web process and a Celery worker) count; a third one's scrape sees the sum
    count = (
        "import django, sys; django.setup(); "
        "from agent_platform.observability.metrics import note_run_requeued; note_run_requeued(int(sys.argv[1]))"
    )
    for amount in ("3", "4"):
        result = run(["-c", count, amount], PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
        assert result.returncode == 0, result.stderr
    show = (
        "import django; django.setup(); from agent_platform.observability.metrics import exposition; "
        "print(exposition().decode())"
    )
    result = run(["-c", show], PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    samples = {s.name: s.value for f in text_string_to_metric_families(result.stdout) for s in f.samples}
    assert samples["agent_platform_runs_requeued_total"] == 7
