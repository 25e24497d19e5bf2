"""Views (DRF and plain Django, in and outside /api/) that fail the way a request does when a service is down."""

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.urls import urlpatterns as project_urlpatterns
from tests.support.redis_server import free_port


def _redis_refused():
    """What Django's Redis cache raises when nothing listens: a real connection to a closed port."""
    import redis

    redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1).get("x")


def _redis_timeout():
    import redis

    raise redis.exceptions.TimeoutError("Timeout reading from socket")


def _broker_refused():
    """A real publish to a broker nobody listens on: Celery raises kombu's OperationalError."""
    import warnings

    from celery.exceptions import AlwaysEagerIgnored
    from kombu import Connection

    from agent_platform.celery import app

    with warnings.catch_warnings(), Connection(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1) as conn:
        warnings.simplefilter("ignore", AlwaysEagerIgnored)  # send_task always publishes, eager or not
        app.send_task("tests.never_runs", connection=conn)


def _database_down():
    raise OperationalError("connection to server at 127.0.0.1, port 5432 failed: Connection refused")


def _database_gone():
    raise InterfaceError("connection already closed")


FAULTS = {
    "cache": _redis_refused,
    "cache-timeout": _redis_timeout,
    "broker": _broker_refused,
    "database": _database_down,
    "database-closed": _database_gone,
}


class Fail(APIView):
    permission_classes = [AllowAny]

    def get(self, request, fault: str):
        FAULTS[fault]()
        return Response({"ok": True})


def plain_fail(request, fault: str):
    FAULTS[fault]()
    return HttpResponse("ok")


class FailInMiddleware:
    """Stands in for a middleware that needs a service (the session middleware reading the database)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.GET.get("middleware_fault"):
            FAULTS[request.GET["middleware_fault"]]()
        return self.get_response(request)


urlpatterns = [
    path("api/test-outages/drf/<str:fault>/", Fail.as_view()),
    path("api/test-outages/plain/<str:fault>/", plain_fail),
    path("test-outages/page/<str:fault>/", plain_fail),
    *project_urlpatterns,
]
handler500 = "agent_platform.api.views.server_error"
