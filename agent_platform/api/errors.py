"""The error registry and the one envelope every API error uses.

    {"error": {"code": "AGENT_NOT_FOUND", "message": "...", "details": {}, "request_id": "...", "timestamp": "..."}}

Code anywhere in the platform raises `PlatformError` (or a subclass naming its code); the DRF exception handler,
the API middleware and the websocket consumers turn it into the envelope. Codes come from seed 004 §8 plus new
ones in the same style; add new codes to `ERROR_REGISTRY` with their HTTP status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from agent_platform.observability.context import current_request_id

logger = logging.getLogger("agent_platform.api")


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    description: str


ERROR_REGISTRY: dict[str, ErrorSpec] = {
    # seed 004 §8.1
    "AGENT_NOT_FOUND": ErrorSpec(404, "Requested agent does not exist"),
    "AGENT_UNAVAILABLE": ErrorSpec(503, "Agent is not responding"),
    "AGENT_EXECUTION_FAILED": ErrorSpec(500, "Agent returned an error during execution"),
    "WORKFLOW_NOT_FOUND": ErrorSpec(404, "Requested workflow does not exist"),
    "WORKFLOW_ALREADY_RUNNING": ErrorSpec(409, "Workflow is already running"),
    "AUTH_INVALID_CREDENTIALS": ErrorSpec(401, "Credentials missing, malformed or incorrect"),
    "AUTH_TOKEN_EXPIRED": ErrorSpec(401, "Token or API key has expired"),
    "AUTH_TOKEN_BLACKLISTED": ErrorSpec(401, "Token or API key has been revoked"),
    "POLICY_DENIED": ErrorSpec(403, "Not allowed to do this"),
    "VALIDATION_ERROR": ErrorSpec(422, "Request failed validation"),
    "RATE_LIMIT_EXCEEDED": ErrorSpec(429, "Too many requests"),
    "LLM_API_ERROR": ErrorSpec(502, "The model provider returned an error"),
    "LLM_API_TIMEOUT": ErrorSpec(504, "The model provider timed out"),
    # platform
    "NOT_FOUND": ErrorSpec(404, "No such resource"),
    "METHOD_NOT_ALLOWED": ErrorSpec(405, "Method not allowed on this resource"),
    "NOT_ACCEPTABLE": ErrorSpec(406, "Cannot produce the requested media type"),
    "UNSUPPORTED_MEDIA_TYPE": ErrorSpec(415, "Request body media type not supported"),
    "PARSE_ERROR": ErrorSpec(400, "Request body could not be parsed"),
    "CONFLICT": ErrorSpec(409, "The resource changed or already exists"),
    "INTERNAL_ERROR": ErrorSpec(500, "Unexpected server error"),
    "SERVICE_UNAVAILABLE": ErrorSpec(503, "A required service is unavailable"),
    "REQUEST_TOO_LARGE": ErrorSpec(413, "The request body exceeds the size limit"),
    "INPUT_TOO_DEEP": ErrorSpec(422, "The input is nested deeper than allowed"),
    "CSRF_FAILED": ErrorSpec(403, "The CSRF check failed"),
    "OTP_REQUIRED": ErrorSpec(401, "This account needs a valid one-time password"),
    # LLM layer
    "LLM_RATE_LIMITED": ErrorSpec(429, "The model provider is rate limiting"),
    "PROVIDER_NOT_CONFIGURED": ErrorSpec(424, "The model has no credentials configured"),
    "MODEL_NOT_FOUND": ErrorSpec(404, "No such model endpoint"),
    "MODEL_DISABLED": ErrorSpec(409, "The model endpoint is disabled"),
    "LLM_INPUT_TOO_LARGE": ErrorSpec(413, "The request exceeds the input size limit"),
    # costs
    "BUDGET_EXCEEDED": ErrorSpec(402, "A hard budget would be exceeded"),
    "PRICE_NOT_FOUND": ErrorSpec(404, "No price for this model"),
    "PRICE_UNKNOWN": ErrorSpec(402, "The model has no price, so a hard budget cannot allow it"),
    "BUDGET_CHECK_FAILED": ErrorSpec(503, "The budget could not be checked; the call was refused"),
    # traces
    "TRACE_NOT_FOUND": ErrorSpec(404, "No such trace"),
    "INGEST_INVALID": ErrorSpec(422, "Some ingested items were invalid"),
    # prompts
    "PROMPT_NOT_FOUND": ErrorSpec(404, "No such prompt, version or label"),
    "PROMPT_VARIABLE_MISSING": ErrorSpec(422, "A required template variable is missing"),
    "PROMPT_VARIABLE_INVALID": ErrorSpec(422, "A template variable has the wrong type"),
    "PROMPT_TEMPLATE_INVALID": ErrorSpec(422, "The template does not compile"),
    "PROMPT_RENDER_LIMIT": ErrorSpec(422, "Rendering exceeded its size or time limit"),
    "PROMPT_SANDBOX_VIOLATION": ErrorSpec(422, "The template tried to reach Python internals"),
    "LABEL_PROTECTED": ErrorSpec(403, "Moving this label needs a permission"),
    "APPROVAL_REQUIRED": ErrorSpec(409, "The target version needs an approved review"),
    # agents
    "AGENT_DISABLED": ErrorSpec(409, "The agent is disabled"),
    "TOOL_NOT_FOUND": ErrorSpec(404, "No such tool"),
    "TOOL_NOT_ALLOWED": ErrorSpec(403, "The agent may not call this tool"),
    "TOOL_ARGUMENTS_INVALID": ErrorSpec(422, "Tool arguments do not match the tool's schema"),
    "TOOL_EXECUTION_FAILED": ErrorSpec(502, "The tool failed"),
    "TOOL_TIMEOUT": ErrorSpec(504, "The tool timed out"),
    "RUN_NOT_FOUND": ErrorSpec(404, "No such run"),
    "RUN_LIMIT_EXCEEDED": ErrorSpec(422, "The run hit its iteration, token or time limit"),
    "RUN_CANCELLED": ErrorSpec(409, "The run was cancelled"),
    "RUN_NOT_CANCELLABLE": ErrorSpec(409, "The run has already finished"),
    "RUN_WORKER_LOST": ErrorSpec(500, "The worker executing the run died"),
    "CONVERSATION_NOT_FOUND": ErrorSpec(404, "No such conversation"),
    # experiments
    "DATASET_NOT_FOUND": ErrorSpec(404, "No such dataset"),
    "DATASET_INVALID": ErrorSpec(422, "Some dataset rows are invalid"),
    "EXPERIMENT_NOT_FOUND": ErrorSpec(404, "No such experiment"),
    "EXPERIMENT_ALREADY_RUNNING": ErrorSpec(409, "The experiment is already running"),
    "EVALUATOR_FAILED": ErrorSpec(500, "An evaluator failed on an item"),
    "EVALUATOR_NOT_FOUND": ErrorSpec(404, "No such evaluator"),
}


class PlatformError(Exception):
    """An error with a registry code. Subclasses set `code`; callers may pass a message, details and the field."""

    code: str = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        if self.code not in ERROR_REGISTRY:
            raise ValueError(f"unregistered error code {self.code!r}")
        self.message = message or ERROR_REGISTRY[self.code].description
        self.details = dict(details or {})
        if field is not None:
            self.details.setdefault("field", field)
        self.headers = headers or {}
        super().__init__(self.message)

    @property
    def status(self) -> int:
        return ERROR_REGISTRY[self.code].status

    def to_dict(self) -> dict[str, Any]:
        return error_body(code=self.code, message=self.message, details=self.details)


class ValidationFailed(PlatformError):
    code = "VALIDATION_ERROR"


class NotFound(PlatformError):
    code = "NOT_FOUND"


def retry_after_seconds() -> int:
    return int(getattr(settings, "SERVICE_RETRY_AFTER_SECONDS", 5))


class ServiceUnavailable(PlatformError):
    """A service the request needs is down: 503 `SERVICE_UNAVAILABLE`, `details.service` naming it ("cache",
    "broker", "database"), and a `Retry-After` header."""

    code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str = "", *, service: str, details: dict[str, Any] | None = None) -> None:
        wait = retry_after_seconds()
        super().__init__(
            message or f"The {service} is unavailable; try again in {wait} s.",
            details={"service": service, "retry_after_seconds": wait, **(details or {})},
            headers={"Retry-After": str(wait)},
        )


def _outage_types() -> list[tuple[type[BaseException], str]]:
    """(exception type, service) for the faults of the services a request may need; the first match wins."""
    from django.db import InterfaceError, OperationalError

    types: list[tuple[type[BaseException], str]] = []
    try:
        import kombu.exceptions  # a failed publish to the broker (Celery wraps the transport's error in this)

        types.append((kombu.exceptions.OperationalError, "broker"))
    except ImportError:  # pragma: no cover - kombu comes with Celery
        pass
    try:
        import redis.exceptions

        types += [
            (t, "cache")
            for t in (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                redis.exceptions.ReadOnlyError,
                redis.exceptions.OutOfMemoryError,
            )
        ]
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    types += [(OperationalError, "database"), (InterfaceError, "database")]
    return types


_OUTAGES: list[tuple[type[BaseException], str]] | None = None


def outage_service(exc: BaseException | None) -> str | None:
    """The service whose outage `exc` is ("cache", "broker", "database"), or None when it is not one."""
    global _OUTAGES
    if exc is None:
        return None
    if isinstance(exc, ServiceUnavailable):
        return exc.details.get("service")
    if _OUTAGES is None:
        _OUTAGES = _outage_types()
    for exc_type, service in _OUTAGES:
        if isinstance(exc, exc_type):
            return service
    return None


def error_body(*, code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "request_id": current_request_id(),
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
    }


def error_response(
    *, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JsonResponse:
    response = JsonResponse(error_body(code=code, message=message, details=details), status=ERROR_REGISTRY[code].status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def too_large_message() -> str:
    return f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."


def _flatten_validation(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested ValidationError detail as {"field.sub": ["message", ...]}."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            fields.update(_flatten_validation(value, name))
    elif isinstance(detail, list) and detail and all(not isinstance(v, (dict, list)) for v in detail):
        fields[prefix or "non_field_errors"] = [str(v) for v in detail]
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            fields.update(_flatten_validation(value, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        fields[prefix or "non_field_errors"] = [str(detail)]
    return fields


def validation_message(fields: dict[str, list[str]]) -> str:
    parts = [f"{name}: {' '.join(messages)}" for name, messages in fields.items()]
    return "Invalid input. " + "; ".join(parts)


_JWT_MESSAGES = {"token is expired": "AUTH_TOKEN_EXPIRED", "token is blacklisted": "AUTH_TOKEN_BLACKLISTED"}


def _auth_code(exc: drf_exceptions.APIException) -> str:
    text = str(exc.detail).lower()
    for fragment, code in _JWT_MESSAGES.items():
        if fragment in text:
            return code
    return getattr(exc, "platform_code", "AUTH_INVALID_CREDENTIALS")


def envelope_for_exception(exc: Exception) -> tuple[str, str, dict[str, Any], dict[str, str]]:
    """(code, message, details, headers) for any exception an API view can raise."""
    if isinstance(exc, PlatformError):
        return exc.code, exc.message, exc.details, exc.headers
    if isinstance(exc, Http404):
        return "NOT_FOUND", "Not found.", {}, {}
    if isinstance(exc, RequestDataTooBig):
        return "REQUEST_TOO_LARGE", too_large_message(), {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE}, {}
    if isinstance(exc, DjangoPermissionDenied):
        return "POLICY_DENIED", "You do not have permission to perform this action.", {}, {}
    if isinstance(exc, drf_exceptions.ValidationError):
        fields = _flatten_validation(exc.detail)
        return "VALIDATION_ERROR", validation_message(fields), {"fields": fields}, {}
    if isinstance(exc, drf_exceptions.ParseError):
        return "PARSE_ERROR", str(exc.detail), {}, {}
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        message = str(exc.detail) if not isinstance(exc.detail, dict) else str(exc.detail.get("detail", exc.detail))
        return _auth_code(exc), message, {}, {"WWW-Authenticate": 'Bearer realm="api"'}
    if isinstance(exc, drf_exceptions.PermissionDenied):
        return "POLICY_DENIED", str(exc.detail), {}, {}
    if isinstance(exc, drf_exceptions.NotFound):
        return "NOT_FOUND", str(exc.detail), {}, {}
    if isinstance(exc, drf_exceptions.MethodNotAllowed):
        return "METHOD_NOT_ALLOWED", str(exc.detail), {}, {}
    if isinstance(exc, drf_exceptions.NotAcceptable):
        return "NOT_ACCEPTABLE", str(exc.detail), {}, {}
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        return "UNSUPPORTED_MEDIA_TYPE", str(exc.detail), {}, {}
    if isinstance(exc, drf_exceptions.Throttled):
        wait = int(exc.wait or 1)
        return (
            "RATE_LIMIT_EXCEEDED",
            f"Too many requests; retry in {wait} s.",
            {"retry_after_seconds": wait},
            {"Retry-After": str(wait)},
        )
    if isinstance(exc, drf_exceptions.APIException):
        return "INTERNAL_ERROR" if exc.status_code >= 500 else "VALIDATION_ERROR", str(exc.detail), {}, {}
    service = outage_service(exc)
    if service is not None:
        unavailable = ServiceUnavailable(service=service)
        return unavailable.code, unavailable.message, unavailable.details, unavailable.headers
    return "INTERNAL_ERROR", "An unexpected error occurred; it has been logged with this request id.", {}, {}


def log_outage(exc: BaseException) -> None:
    """One line per refused request (no traceback: the fault is the service's, not this code's)."""
    logger.warning("%s unavailable: %s: %s", outage_service(exc) or "a service", type(exc).__name__, exc)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception of every API view becomes the envelope."""
    code, message, details, headers = envelope_for_exception(exc)
    status = ERROR_REGISTRY[code].status
    if code == "SERVICE_UNAVAILABLE":
        log_outage(exc)
    elif status >= 500 and not isinstance(exc, PlatformError):
        logger.exception("unhandled API error", exc_info=exc)
    elif status >= 500:
        logger.error("API error %s: %s", code, message)
    # DRF's own status wins where it is more precise (e.g. a 400 APIException subclass).
    if isinstance(exc, drf_exceptions.APIException) and not isinstance(
        exc, (drf_exceptions.ValidationError, PlatformError)
    ):
        status = exc.status_code
    set_rollback()
    response = Response(error_body(code=code, message=message, details=details), status=status)
    for name, value in headers.items():
        response[name] = value
    return response
