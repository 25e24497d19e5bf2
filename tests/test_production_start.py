"""Production mode starts clean: `collectstatic` writes its manifest (the manifest storage checks every file a
stylesheet or script names), daphne then serves the admin's login page with its hashed static files, and
docker-compose's web health check, run as the compose file writes it with the shipped `.env.example`, passes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from tests.support.redis_server import free_port
from tests.test_settings_and_startup import ROOT, STRONG_KEY, clean_env


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> dict[str, str]:
    """The shipped .env.example with its secrets filled in, on a fresh SQLite database, static files collected."""
    tmp = tmp_path_factory.mktemp("production")
    env = clean_env(
        **{**env_example(), "SECRET_KEY": STRONG_KEY, "CREDENTIALS_ENCRYPTION_KEYS": Fernet.generate_key().decode()},
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp / "static"),
    )
    for args in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
    env["_STATIC_ROOT"] = str(tmp / "static")
    return env


@pytest.fixture(scope="module")
def daphne(production):
    port = free_port()
    env = {**production, "PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "agent_platform.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers (even a 400 for the host): it is up
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"daphne stopped: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield env
    process.terminate()
    process.wait(10)


def get(env: dict[str, str], path: str) -> urllib.request.addinfourl:
    host = env["ALLOWED_HOSTS"].split(",")[0]
    request = urllib.request.Request(
        f"http://127.0.0.1:{env['PORT']}{path}", headers={"Host": host, "X-Forwarded-Proto": "https"}
    )
    return urllib.request.urlopen(request, timeout=10)


def test_collectstatic_writes_a_manifest_that_names_every_vendored_file(production):
    manifest = Path(production["_STATIC_ROOT"]) / "staticfiles.json"
    paths = yaml.safe_load(manifest.read_text())["paths"]
    assert "vendor/chartjs/chart.umd.min.js" in paths and "admin/css/base.css" in paths


def test_the_admin_login_page_and_its_hashed_static_files_are_served_in_production(daphne):
    page = get(daphne, "/admin/login/")
    assert page.status == 200
    html = page.read().decode()
    stylesheets = re.findall(r'href="(/static/[^"]+\.css)"', html)
    assert stylesheets and all(re.search(r"\.[0-9a-f]{12}\.css$", href) for href in stylesheets), stylesheets
    assert get(daphne, stylesheets[0]).status == 200


def test_the_compose_health_check_passes_with_the_shipped_env_example(daphne):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["web"]["healthcheck"]["test"]
    assert command[0] == "CMD" and command[1] == "python"
    done = subprocess.run(
        [sys.executable, *command[2:]], cwd=ROOT, env=daphne, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


def test_asking_for_the_loopback_address_as_host_is_refused_in_production(daphne):
    # Why the health check names an allowed host: production refuses a Host it does not serve.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{daphne['PORT']}/health/ready/", timeout=10)
    assert refused.value.code == 400
