"""Health, metrics, OTP on the admin, websockets through the real ASGI app, and a real Celery worker."""

import platform

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from agent_platform.asgi import application
from agent_platform.observability.context import Caller, TraceContext, bind_caller, use_trace

UNREACHABLE_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}


def test_liveness(client):
    response = client.get("/health/")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_reports_each_component(client):
    body = client.get("/health/ready/").json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["cache"]["status"] == "ok"


@pytest.mark.django_db
def test_readiness_is_503_naming_redis_when_redis_is_unreachable(client):
    with override_settings(CACHES=UNREACHABLE_REDIS):
        response = client.get("/health/ready/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["cache"]["status"] == "fail" and body["checks"]["cache"]["backend"] == "redis"
    assert "cache (redis)" in body["message"]
    assert body["checks"]["database"]["status"] == "ok"


@pytest.mark.django_db
def test_readiness_names_an_unreachable_broker(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/health/ready/")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["status"] == "fail"
    assert "broker (redis)" in response.json()["message"]


@pytest.mark.django_db
def test_metrics_in_prometheus_format(client):
    client.get("/health/")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert "# TYPE django_http_requests_total_by_method_total counter" in text
    assert 'django_http_requests_total_by_method_total{method="GET"}' in text


@pytest.mark.django_db
def test_admin_without_otp_in_development(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
@override_settings(ADMIN_REQUIRE_OTP=True)
def test_admin_requires_a_verified_otp_device_in_production_mode(client, admin_user):
    client.force_login(admin_user)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    device = TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)
    client.logout()
    login = {"username": "root", "password": "correct-horse-battery", "this_is_the_login_form": "1"}
    wrong = client.post("/admin/login/?next=/admin/", {**login, "otp_device": device.persistent_id, "otp_token": "1"})
    assert wrong.status_code == 200  # form re-shown with an error
    assert client.get("/admin/").status_code == 302
    device.refresh_from_db()
    device.throttle_reset()  # django-otp backs off after a failure; a person would wait a second
    token = f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"
    ok = client.post("/admin/login/?next=/admin/", {**login, "otp_device": device.persistent_id, "otp_token": token})
    assert ok.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_otp_enroll_command_prints_provisioning_uri(admin_user):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("otp_enroll", "root", "--backup-tokens", "2", stdout=out)
    text = out.getvalue()
    assert "otpauth://totp/" in text
    assert TOTPDevice.objects.filter(user=admin_user, confirmed=True).count() == 1
    assert admin_user.staticdevice_set.get().token_set.count() == 2


@pytest.mark.django_db
async def test_websocket_ping_through_the_real_asgi_application():
    communicator = WebsocketCommunicator(application, "/ws/ping/", headers=[(b"origin", b"http://localhost")])
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from() == {"type": "pong"}
    await communicator.send_json_to({"hello": "world"})
    assert await communicator.receive_json_from() == {"type": "echo", "data": {"hello": "world"}}
    await communicator.disconnect()


@pytest.mark.django_db
async def test_websocket_from_a_foreign_origin_is_rejected():
    communicator = WebsocketCommunicator(application, "/ws/ping/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await communicator.connect()
    assert not connected


def test_eager_task_runs_in_process_on_the_embedded_default(settings):
    from agent_platform.celery import ping

    if not settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.skip("this test is for the embedded default (no broker)")
    assert ping.delay().get(timeout=5)["system"] == platform.system()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_real_worker_runs_a_task_with_trace_context(celery_worker):
    from agent_platform.celery import ping

    trace = TraceContext(trace_id="ab" * 16, span_id="cd" * 8)
    with use_trace(trace), bind_caller(user_id=7, agent_slug="helper"):
        result = ping.delay().get(timeout=30)
    assert result["system"] == platform.system()
    assert result["trace_id"] == trace.trace_id
    assert result["parent_span_id"] == trace.span_id
    assert result["caller"] == Caller(user_id=7, agent_slug="helper").as_dict()
