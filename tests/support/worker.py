"""Start and stop a real Celery worker process for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url_for_current_connection() -> str:
    """DATABASE_URL of the database this process is using now (the test database under pytest)."""
    params = connection.settings_dict
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{params['NAME']}"


def full_stack() -> bool:
    """PostgreSQL and Redis, not eager: a worker process can share the test database and the broker."""
    return bool(settings.REDIS_URL) and settings.USING_POSTGRES and not settings.CELERY_TASK_ALWAYS_EAGER


def through_the_worker(node) -> bool:
    """Whether a test's runs and experiments go through the real worker: marked `worker`, or marked `runs` on the
    full stack and not `in_process`. Other tests execute them in-process (eager Celery)."""
    if node.get_closest_marker("worker"):
        return True
    return full_stack() and bool(node.get_closest_marker("runs")) and not node.get_closest_marker("in_process")


def records_written() -> None:
    """Make what finished runs recorded (spans, LLM calls, usage) readable in the database: flush this process's
    buffers, and wait until the session's worker, if one runs, holds no task: a task flushes its records at its
    end, just after its run is stored as finished."""
    from agent_platform.observability.hooks import hub

    hub.flush()
    if CeleryWorker.session is not None:
        CeleryWorker.session.wait_idle()


def budgets_reach_the_worker() -> None:
    """A budget saved in this process applies in a worker process at its budget index's next version check, at most
    a second after its last one (costs.budgets, by design): when runs go to a worker, wait that second out."""
    from agent_platform.celery import app

    if CeleryWorker.session is not None and not app.conf.task_always_eager:
        time.sleep(1.1)


def worker_environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_current_connection(),
        REDIS_URL=settings.REDIS_URL,
        CACHE_KEY_PREFIX=settings.CACHES["default"]["KEY_PREFIX"],
        CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        CELERY_TASK_ALWAYS_EAGER="false",
        DJANGO_SETTINGS_MODULE="agent_platform.settings",
        LOG_LEVEL="WARNING",
        LLM_MOCK_STORE="cache",  # what the test scripted on a mock model is what the worker answers
    )
    if "CONFIG" in settings.CHANNEL_LAYERS["default"]:
        env["CHANNEL_LAYER_PREFIX"] = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    env.update(extra)
    return env


class CeleryWorker:
    session: CeleryWorker | None = None  # the one the `celery_worker` fixture started, while it runs

    def __init__(self, *, env: dict[str, str], concurrency: int = 2, pool: str = "prefork") -> None:
        self.env = env
        self.concurrency = concurrency
        self.pool = pool
        self.process: subprocess.Popen | None = None
        self.name_prefix = f"test-{os.getpid()}-{id(self)}"
        self.node_name = f"{self.name_prefix}@{socket.gethostname()}"  # what `-n <prefix>@%h` expands to
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"celery-worker-{os.getpid()}-{id(self)}.log"

    def start(self, timeout: float = 60.0) -> None:
        from agent_platform.celery import app, maintenance_queue_for

        # the run queue and the maintenance queue (reaper, dispatch relay), as the documented worker command
        default = self.env["CELERY_QUEUE"]
        queue = f"{default},{maintenance_queue_for(default, self.env.get('CELERY_MAINTENANCE_QUEUE', ''))}"
        cmd = [
            sys.executable, "-m", "celery", "-A", "agent_platform", "worker",
            "-Q", queue, "-P", self.pool, "-c", str(self.concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
            "-n", f"{self.name_prefix}@%h",
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log()}")
            replies = app.control.ping(timeout=0.5, destination=None) or []
            if any(self.name_prefix in name for reply in replies for name in reply):
                return
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"celery worker did not answer within {timeout} s:\n{self.log()}")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Return once the worker runs and holds no task, so that what a test leaves running cannot write to the
        database while the next test's set-up (a flush, for transactional tests) truncates it."""
        from agent_platform.celery import app

        if not self.process or self.process.poll() is not None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # addressed to this worker only, so each reply returns at once instead of after the whole timeout
            inspect = app.control.inspect(destination=[self.node_name], timeout=2.0)
            replies = [inspect.active(), inspect.reserved()]
            if all(reply and not reply.get(self.node_name) for reply in replies):
                return
            time.sleep(0.1)
        raise RuntimeError(f"celery worker still busy after {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and its pool children), as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""
