"""Request id and trace context on every request; the error envelope for anything that escapes an API view."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse

from agent_platform.api.errors import envelope_for_exception, error_response
from agent_platform.observability.context import (
    REQUEST_ID_PATTERN,
    Caller,
    TraceContext,
    new_request_id,
    new_trace_id,
    parse_traceparent,
    reset_caller,
    reset_request_id,
    reset_trace,
    set_caller,
    set_request_id,
    set_trace,
)
from agent_platform.observability.hooks import hub

logger = logging.getLogger("agent_platform.api")


class RequestIdMiddleware:
    """Accept a well-formed `X-Request-ID` (else make one), open the trace context, echo both on the response,
    and flush buffered observer records when the request ends."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if REQUEST_ID_PATTERN.match(supplied) else new_request_id()
        request.request_id = request_id
        trace = parse_traceparent(request.headers.get("traceparent")) or TraceContext(trace_id=new_trace_id())
        request_token = set_request_id(request_id)
        trace_token = set_trace(trace)
        caller_token = set_caller(Caller())
        try:
            response = self.get_response(request)
        finally:
            hub.flush()
            reset_caller(caller_token)
            reset_trace(trace_token)
            reset_request_id(request_token)
        response["X-Request-ID"] = request_id
        response["X-Trace-ID"] = trace.trace_id
        return response


class ApiExceptionMiddleware:
    """Anything raised under /api/ outside DRF's handling (a plain Django view, a middleware) gets the envelope."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api/"):
            return None
        code, message, details, headers = envelope_for_exception(exception)
        if code == "INTERNAL_ERROR":
            logger.exception("unhandled error on %s", request.path, exc_info=exception)
        return error_response(code=code, message=message, details=details, headers=headers)


class SessionCallerMiddleware:
    """Attribute work done for a browser session to its user (API keys and JWT bind the caller themselves)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            set_caller(Caller(user_id=user.pk))
        return self.get_response(request)
