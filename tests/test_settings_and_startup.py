"""Settings in both modes, the production start-up refusal, `check --deploy`, and the stdlib `platform` module."""

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
STRONG_KEY = "k7#Vq9!Lm2@xP4$wR8^zT1&nB6*cY3(hJ5)eG0-sD_fA+uQ=iO~"

PROBE = """
import json, django
from django.conf import settings
django.setup()
from agent_platform.celery import app
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"],
    "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
    "pool": settings.DATABASES["default"].get("OPTIONS", {}).get("pool"),
    "cache": settings.CACHES["default"]["BACKEND"],
    "channels": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "broker": app.conf.broker_url,
    "eager": app.conf.task_always_eager,
    "beat": settings.CELERY_BEAT_SCHEDULER,
    "acks_late": app.conf.task_acks_late,
    "reject_on_lost": app.conf.task_reject_on_worker_lost,
    "prefetch": app.conf.worker_prefetch_multiplier,
    "accept": app.conf.accept_content,
    "visibility": app.conf.broker_transport_options["visibility_timeout"],
    "max_retry_delay": settings.CELERY_MAX_RETRY_DELAY,
    "db_reuse_max": __import__("celery.fixups.django").fixups.django.DjangoWorkerFixup(app).db_reuse_max,
    "litellm_local": __import__("os").environ.get("LITELLM_LOCAL_MODEL_COST_MAP"),
    "hf_offline": __import__("os").environ.get("HF_HUB_OFFLINE"),
    "otp": settings.ADMIN_REQUIRE_OTP,
    "litellm_imported": __import__("sys").modules.get("litellm") is not None,
    "sentry": __import__("sentry_sdk").get_client().is_active(),
}))
"""


def clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "DJANGO_", "CELERY_"))}
    for name in ("SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "LITELLM_LOCAL_MODEL_COST_MAP", "HF_HUB_OFFLINE"):
        env.pop(name, None)
    env["DJANGO_SETTINGS_MODULE"] = "agent_platform.settings"
    env.update(overrides)
    return env


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean_env(**env), capture_output=True, text=True, timeout=120
    )


def probe(**env: str) -> dict:
    result = run(["-c", PROBE], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": STRONG_KEY,
        "ALLOWED_HOSTS": "agents.example.com",
        "CREDENTIALS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": "sqlite:////tmp/agent-platform-prod-check.sqlite3",
    }
    env.update(overrides)
    return env


def test_embedded_default_needs_nothing():
    s = probe()
    assert s["db"] == "django.db.backends.sqlite3"
    assert s["cache"].endswith("LocMemCache")
    assert s["channels"].endswith("InMemoryChannelLayer")
    assert s["broker"] == "memory://" and s["eager"] is True
    assert s["litellm_local"] == "True" and s["hf_offline"] == "1"
    assert s["otp"] is False
    assert s["sentry"] is False
    assert s["litellm_imported"] is False, "litellm must be imported lazily, never at Django start-up"


def test_full_stack_from_database_url_and_redis_url():
    s = probe(DATABASE_URL="postgres://postgres@127.0.0.1:5432/test", REDIS_URL="redis://127.0.0.1:6379/3")
    assert s["db"] == "django.db.backends.postgresql"
    assert s["conn_max_age"] == 0 and s["pool"]["max_size"] == 10, (
        "a bounded pool per process, not a connection per thread"
    )
    assert s["cache"].endswith("RedisCache")
    assert s["channels"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert s["broker"] == "redis://127.0.0.1:6379/3" and s["eager"] is False
    assert s["beat"] == "django_celery_beat.schedulers:DatabaseScheduler"


def test_the_pool_is_sized_by_setting_or_turned_off_for_persistent_connections():
    pg = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test"}
    s = probe(**pg, DB_POOL_MIN_SIZE="2", DB_POOL_MAX_SIZE="4", DB_POOL_TIMEOUT="3")
    assert (s["pool"]["min_size"], s["pool"]["max_size"], s["pool"]["timeout"]) == (2, 4, 3.0)
    s = probe(**pg, DB_POOL_MAX_SIZE="0", CONN_MAX_AGE="30")
    assert s["pool"] is None and s["conn_max_age"] == 30


def test_the_list_based_channel_layer_can_be_chosen():
    s = probe(REDIS_URL="redis://127.0.0.1:6379/3", CHANNEL_LAYER_BACKEND="core")
    assert s["channels"] == "channels_redis.core.RedisChannelLayer"


def test_a_mistyped_channel_layer_choice_is_refused_not_guessed():
    result = run(["-c", PROBE], REDIS_URL="redis://127.0.0.1:6379/3", CHANNEL_LAYER_BACKEND="pubusb")
    assert result.returncode != 0
    assert 'CHANNEL_LAYER_BACKEND must be "pubsub" or "core"' in result.stderr


def test_sentry_is_initialised_only_with_a_dsn():
    assert probe(SENTRY_DSN="http://public@127.0.0.1:9/1")["sentry"] is True


def test_celery_reliability_settings():
    s = probe(REDIS_URL="redis://127.0.0.1:6379/3")
    assert s["acks_late"] and s["reject_on_lost"] and s["prefetch"] == 1
    assert s["accept"] == ["json"]
    assert s["visibility"] > s["max_retry_delay"]
    # the worker keeps its database connections across tasks (Celery's fixup would otherwise close them each time)
    assert s["db_reuse_max"] >= 1000


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "django-insecure-" + "x" * 60}, "SECRET_KEY is insecure"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY is insecure"),
        ({"DEBUG": "true"}, "DEBUG is on"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS is empty"),
        ({"CREDENTIALS_ENCRYPTION_KEYS": ""}, "CREDENTIALS_ENCRYPTION_KEYS is not set"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS contains '*'"),
        ({"ALLOWED_HOSTS": "agents.example.com,*"}, "ALLOWED_HOSTS contains '*'"),
        ({"CREDENTIALS_ENCRYPTION_KEYS": "not-a-fernet-key"}, "key #1 is not a valid Fernet key"),
        (
            {"CREDENTIALS_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},c2hvcnQ="},
            "key #2 is not a valid Fernet key",
        ),
    ],
)
def test_production_refuses_to_start_when_insecure(override, complaint):
    result = run(["manage.py", "check"], **production_env(**override))
    assert result.returncode != 0
    assert "Refusing to start in production" in result.stderr and complaint in result.stderr


def test_a_malformed_encryption_key_is_refused_at_start_without_echoing_it():
    result = run(["manage.py", "check"], CREDENTIALS_ENCRYPTION_KEYS="my-secret-but-malformed-key")
    assert result.returncode != 0
    assert "key #1 is not a valid Fernet key" in result.stderr
    assert "my-secret-but-malformed-key" not in result.stderr


def test_production_configuration_passes_check_deploy_with_zero_warnings():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert probe(**production_env())["otp"] is True


def test_stdlib_platform_module_is_intact_in_pytest_and_django():
    import django.conf

    assert platform.system() == os.uname().sysname
    assert Path(platform.__file__).parent != ROOT
    assert not (ROOT / "platform").exists() and not (ROOT / "platform.py").exists()
    result = run(["manage.py", "shell", "-c", "import platform, uuid; print(platform.system(), platform.__file__)"])
    assert result.returncode == 0, result.stderr
    system, module_file = result.stdout.strip().splitlines()[-1].split()
    assert system == os.uname().sysname
    assert str(ROOT) not in module_file
    assert django.conf.settings.configured


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian package) is not installed")
def test_docker_compose_file_validates():
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


async def _connects(headers: list[tuple[bytes, bytes]]) -> bool:
    from channels.testing import WebsocketCommunicator

    from agent_platform.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/ping/", headers=headers)
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return connected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (b"http://localhost:8000", b"localhost:8000", True),
        (b"https://localhost", b"localhost", True),
        (b"http://localhost:8001", b"localhost:8000", False),  # an allowed host on another port
        (b"http://localhost:8000", b"localhost", False),
        (b"http://localhost", None, True),
        (b"http://localhost:8001", None, False),  # no Host to compare: only the scheme's default port
        (b"http://evil.example:8000", b"evil.example:8000", False),  # same origin, but not an allowed host
        (b"null", b"localhost", False),
        (None, b"localhost", False),
    ],
)
async def test_websocket_origin_must_match_host_and_port(origin, host, allowed):
    headers = [(name, value) for name, value in ((b"origin", origin), (b"host", host)) if value is not None]
    assert await _connects(headers) is allowed


@pytest.mark.django_db
async def test_a_trusted_origin_may_open_a_socket_on_its_own_port(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com:8443"]
    assert await _connects([(b"origin", b"https://app.example.com:8443"), (b"host", b"localhost")]) is True
    assert await _connects([(b"origin", b"https://app.example.com:9443"), (b"host", b"localhost")]) is False
