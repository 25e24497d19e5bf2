"""Request id and trace context on every request; the error envelope for anything that escapes an API view."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from agent_platform.api.errors import (
    envelope_for_exception,
    error_response,
    log_outage,
    outage_service,
    retry_after_seconds,
    too_large_message,
)
from agent_platform.api.input_guard import InputRefused, check_form, check_json_body, check_path_and_query
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


API_PREFIX = "/api/"


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class InputGuardMiddleware:
    """Refuse input that must never reach a view: a NUL in the path or a query parameter (everywhere), and under
    /api/ a body over DATA_UPLOAD_MAX_MEMORY_SIZE (413), JSON nested deeper than API_MAX_JSON_DEPTH (422) or a NUL
    in any JSON string or form field (422). One check for every view, whatever parsers the view declares."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        is_api = request.path.startswith(API_PREFIX)
        try:
            check_path_and_query(request.path, request.GET)
            if is_api:
                self._check_body(request)
        except TooManyFieldsSent:
            limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            refused = InputRefused("VALIDATION_ERROR", f"More than {limit} parameters.", {"max_fields": limit})
        except InputRefused as exc:
            refused = exc
        else:
            return self.get_response(request)
        if not is_api:
            return HttpResponseBadRequest(refused.message, content_type="text/plain; charset=utf-8")
        return error_response(code=refused.code, message=refused.message, details=refused.details)

    @staticmethod
    def _check_body(request: HttpRequest) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        too_large = InputRefused("REQUEST_TOO_LARGE", too_large_message(), {"max_bytes": limit})
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if limit is not None and declared > limit:
            raise too_large  # refused before a byte of the body is read
        content_type = request.META.get("CONTENT_TYPE", "")
        if _is_json(content_type):
            try:
                body = request.body
            except RequestDataTooBig:
                raise too_large from None
            if limit is not None and len(body) > limit:  # a chunked body declares no length
                raise too_large
            if body:
                check_json_body(body, max_depth=settings.API_MAX_JSON_DEPTH)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            try:
                check_form(request.POST)
            except RequestDataTooBig:
                raise too_large from None


def error_response_for(request: HttpRequest, exception: BaseException) -> HttpResponse | None:
    """The answer to an exception nothing else handled: the envelope under /api/; elsewhere a plain 503 page
    when a service is down, or None (Django's own 500 page)."""
    if request.path.startswith(API_PREFIX):
        code, message, details, headers = envelope_for_exception(exception)
        if code == "INTERNAL_ERROR":
            logger.exception("unhandled error on %s", request.path, exc_info=exception)
        elif code == "SERVICE_UNAVAILABLE":
            log_outage(exception)
        return error_response(code=code, message=message, details=details, headers=headers)
    service = outage_service(exception)
    if service is None:
        return None
    log_outage(exception)
    return service_unavailable_page(service)


def service_unavailable_page(service: str) -> HttpResponse:
    # No template: rendering the site's base template would need the session and the user, i.e. the database.
    wait = retry_after_seconds()
    body = (
        "<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1>"
        f"<p>The {service} is not answering right now. Try again in {wait} seconds.</p>"
    )
    response = HttpResponse(body, status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(wait)
    return response


class ApiExceptionMiddleware:
    """Anything a view raises outside DRF's handling (a plain Django view) gets the envelope under /api/; a service
    outage gets a 503 with Retry-After everywhere (see `agent_platform.api.views.server_error` for middleware)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return error_response_for(request, exception)


class SessionCallerMiddleware:
    """Attribute work done for a browser session to its user (API keys and JWT bind the caller themselves)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            set_caller(Caller(user_id=user.pk))
        return self.get_response(request)
