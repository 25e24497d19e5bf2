"""Full stack: runs on a real Celery worker spend a soft budget past its thresholds. The worker records each alert
once and sends it itself (its alert task): the webhook served here receives them, the alert rows say mail and webhook
went out. The same rules in-process: test_budgets.py::test_alerts_fire_once_per_threshold_by_mail_and_webhook."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from agent_platform.llm.mock import mock_provider_for
from agents import services as agent_services
from agents.models import RunStatus
from costs.models import Budget, BudgetAlert
from costs.services import budget_save
from tests.support.worker import budgets_reach_the_worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for(predicate, *, what: str, log, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{log()}"
        time.sleep(0.05)
    return value


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_runs_on_the_worker_send_each_threshold_alert_once(celery_worker, webhook, user, key_client):
    agent_services.agent_create(
        data={"slug": "spender", "name": "Spender", "model_endpoint": "mock/scripted", "system_prompt_text": "Hi."}
    )
    budget = budget_save(
        budget=Budget(
            name="alice monthly", scope="user", scope_id=user.pk, period="month", limit=Decimal("0.01"),
            enforcement="soft", thresholds=[50, 100], alert_emails="ops@example.com", webhook_url=webhook,
        )
    )  # fmt: skip
    budgets_reach_the_worker()
    scripted = mock_provider_for("mock/scripted")
    scripted.reset()

    def spend(input_tokens: int) -> None:  # the mock's demo price: 0.50 per million input tokens
        scripted.queue_response(content="ok", usage={"input_tokens": input_tokens, "output_tokens": 0})
        response = key_client.post("/api/v1/agents/spender/runs/", {"input": "spend", "wait": True}, format="json")
        assert response.json()["status"] == RunStatus.SUCCEEDED, (response.json(), celery_worker.log())

    try:
        spend(12_000)  # 0.006: 60%
        wait_for(lambda: _Hook.received, what="the 50% alert's webhook", log=celery_worker.log)
        spend(2_000)  # 0.007: still under 100%
        spend(4_000)  # 0.009
        spend(2_000)  # 0.010: 100%
        wait_for(lambda: len(_Hook.received) >= 2, what="the 100% alert's webhook", log=celery_worker.log)
        celery_worker.wait_idle()  # any further (duplicate) alert would have been sent by now
    finally:
        scripted.reset()

    assert [(h["threshold"], h["budget"]) for h in _Hook.received] == [(50, "alice monthly"), (100, "alice monthly")]
    alerts = list(BudgetAlert.objects.filter(budget=budget).order_by("threshold"))
    assert [a.threshold for a in alerts] == [50, 100]
    assert all(a.email_sent and a.webhook_status == "204" for a in alerts), [
        (a.email_sent, a.webhook_status) for a in alerts
    ]
    assert Budget.objects.get(pk=budget.pk).spent == Decimal("0.01")
