"""Redis is optional for answering: a real `redis-server` (started here on a free port) is the cache; it is killed
and started again while API calls go on, and every call answers 2xx or 503 SERVICE_UNAVAILABLE, never 500.
Throttling goes on per process while it is down and is shared again once it is back."""

from __future__ import annotations

import itertools
import logging

import pytest

from tests.support.redis_server import RedisServer
from tests.test_api_conventions import assert_envelope

pytestmark = pytest.mark.django_db

OK = {200, 201, 202}


@pytest.fixture
def redis_server():
    server = RedisServer()
    if not server.binary:
        pytest.skip("redis-server is not installed")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_cache(redis_server, settings):
    """The test process's cache (and so the throttles and the prompt cache) on `redis_server`."""
    from agent_platform.cache_safe import reset_outages
    from prompts import cache as prompt_cache

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_server.url,
            "KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }  # changing CACHES resets django.core.cache.caches: the next call connects to this server
    settings.CACHE_RETRY_SECONDS = 0  # try the cache on every call: the phases below switch at once
    reset_outages()
    prompt_cache.clear_local()
    yield redis_server
    reset_outages()
    prompt_cache.clear_local()


@pytest.fixture
def in_process_runs(settings):
    """Runs execute in the request (the embedded default), also on the full stack: this test is about the cache."""
    from agent_platform.celery import app

    previous = app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def world(user, in_process_runs):
    from agents.services import agent_create
    from prompts.services import prompt_create

    agent = agent_create(
        data={"slug": "outage-bot", "name": "Outage bot", "model_endpoint": "mock/outage", "tools": []}, owner=user
    )
    prompt_create(name="greet", text="Hello {{ who }}!", user=user)
    return agent


names = itertools.count()


def mixed_calls(client, *, agent_slug: str, run_id: str) -> dict[str, object]:
    """One of each kind of call a client makes: reads, a render, a run start and a write."""
    return {
        "agents": client.get("/api/v1/agents/"),
        "render": client.post("/api/v1/prompts/greet/render/", {"variables": {"who": "Ada"}}, format="json"),
        "prompt": client.get("/api/v1/prompts/greet/"),
        "run status": client.get(f"/api/v1/runs/{run_id}/"),
        "run start": client.post(f"/api/v1/agents/{agent_slug}/runs/", {"input": "hello"}, format="json"),
        "prompt create": client.post("/api/v1/prompts/", {"name": f"made-{next(names)}", "text": "Hi"}, format="json"),
        "traces": client.get("/api/v1/traces/"),
        "usage": client.get("/api/v1/usage/"),
    }


def assert_answered(responses: dict[str, object]) -> None:
    """Every call got a success or a 503 with a code and Retry-After; none got a 500."""
    for name, response in responses.items():
        if response.status_code in OK:
            continue
        assert response.status_code == 503, (name, response.status_code, response.content[:300])
        error = assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
        assert int(response["Retry-After"]) > 0 and error["details"]["service"], name


def statuses(responses: dict[str, object]) -> dict[str, int]:
    return {name: response.status_code for name, response in responses.items()}


def test_api_answers_200_or_503_never_500_while_redis_is_killed_and_restarted(
    redis_cache, world, key_client, client, user, caplog
):
    from prompts.models import Prompt

    client.force_login(user)  # a browser session: stored in the database, so it survives the outage
    run_id = key_client.post("/api/v1/agents/outage-bot/runs/", {"input": "hi"}, format="json").json()["id"]

    before = mixed_calls(key_client, agent_slug="outage-bot", run_id=run_id)
    assert_answered(before)
    assert set(statuses(before).values()) <= OK, statuses(before)
    assert redis_cache.client().dbsize() > 0  # the throttles and the prompt cache do use this server

    caplog.set_level(logging.WARNING, logger="agent_platform.cache")
    prompts_before = Prompt.objects.count()
    redis_cache.kill()
    during = [mixed_calls(key_client, agent_slug="outage-bot", run_id=run_id) for _ in range(3)]
    for responses in during:
        assert_answered(responses)
        refused = {name for name, status in statuses(responses).items() if status == 503}
        # Reads, renders and runs need no cache; a prompt change must reach it (other processes' caches).
        assert refused == {"prompt create"}, statuses(responses)
        assert responses["prompt create"].json()["error"]["details"]["service"] == "cache"
        assert responses["render"].json()["text"] == "Hello Ada!"
    assert Prompt.objects.count() == prompts_before  # refused means nothing was written
    page = client.get("/dashboard/traces/")
    assert page.status_code == 200  # the dashboard and its session work without the cache
    ready = client.get("/health/ready/")
    assert ready.status_code == 503 and ready.json()["checks"]["cache"]["status"] == "fail"
    outage_warnings = [r for r in caplog.records if r.name == "agent_platform.cache" and "unreachable" in r.message]
    assert len(outage_warnings) == 1  # one warning for the outage, not one per request

    redis_cache.start()  # same port, empty (no persistence)
    after = mixed_calls(key_client, agent_slug="outage-bot", run_id=run_id)
    assert_answered(after)
    assert set(statuses(after).values()) <= OK, statuses(after)
    assert after["prompt create"].status_code == 201
    assert redis_cache.client().dbsize() > 0  # the shared cache is in use again
    assert client.get("/health/ready/").status_code == 200
    assert any("answers again" in r.message for r in caplog.records if r.name == "agent_platform.cache")


def test_throttling_limits_per_process_while_redis_is_down_and_is_shared_again_after(redis_cache, key_client, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "3/min", "anon": "3/min"}}
    url = "/api/v1/auth/keys/"
    assert [key_client.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]  # the shared counter
    assert redis_cache.client().keys("*throttle_user_key*")

    redis_cache.kill()
    # The shared count is out of reach: this process counts from zero at the same rate, and still limits.
    assert [key_client.get(url).status_code for _ in range(3)] == [200, 200, 200]
    limited = key_client.get(url)
    assert_envelope(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert int(limited["Retry-After"]) > 0

    redis_cache.start()  # back, empty: the shared counter starts again although the local window is spent
    assert key_client.get(url).status_code == 200
    assert redis_cache.client().keys("*throttle_user_key*")


def test_a_down_cache_is_not_asked_again_until_it_is_due_and_the_readiness_check_ends_the_outage(
    redis_cache, key_client, settings, client
):
    from agent_platform.cache_safe import cache_available

    settings.CACHE_RETRY_SECONDS = 3600
    url = "/api/v1/auth/keys/"
    assert key_client.get(url).status_code == 200
    redis_cache.kill()
    assert key_client.get(url).status_code == 200  # noticed: from now on the cache is skipped
    assert not cache_available()
    redis_cache.start()
    assert key_client.get(url).status_code == 200
    assert redis_cache.client().dbsize() == 0  # not asked: it is not due for another try yet

    assert client.get("/health/ready/").status_code == 200  # the probe asks it anyway, and it answers
    assert cache_available()
    assert key_client.get(url).status_code == 200
    assert redis_cache.client().keys("*throttle_user_key*")
