"""The OpenAPI schema as the API behaves: the error envelope on every status a view can answer, paginated lists.

drf-spectacular documents what a view declares; the platform's conventions live outside the views (the exception
handler, authentication, throttling, the request guards), so this AutoSchema adds what those conventions answer
to every operation, and documents pagination only where a GET list view declares its `pagination_class`.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from agent_platform.api.errors import ERROR_REGISTRY

# What any authenticated, throttled API operation may answer, whatever the view: bad credentials (401), not
# allowed (403), an object or reference that does not exist for the caller (404), an Accept header it cannot serve
# (406), invalid parameters (422), throttled (429), a required service down (503).
COMMON_ERROR_STATUSES = frozenset({401, 403, 404, 406, 422, 429, 503})
# Operations that read a request body may also answer: unparseable body (400), a conflict with the stored state
# (409), too large (413), an unsupported media type (415).
BODY_ERROR_STATUSES = frozenset({400, 409, 413, 415})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=sorted(ERROR_REGISTRY), help_text="A code from the error registry.")
    message = serializers.CharField()
    details = serializers.DictField(help_text="Context of the error, e.g. `fields` for validation errors.")
    request_id = serializers.CharField(allow_null=True)
    timestamp = serializers.CharField()


class ErrorEnvelopeSerializer(serializers.Serializer):
    """Every error of every endpoint."""

    error = ErrorDetailSerializer()


def _codes_for(status: int) -> list[str]:
    return sorted(code for code, spec in ERROR_REGISTRY.items() if spec.status == status)


class PlatformAutoSchema(AutoSchema):
    """AutoSchema with the platform's error envelope and paginated list responses.

    A view lists the extra error statuses it answers beyond the common ones in `error_statuses`
    (e.g. `{402, 424, 502, 504}` for a view that calls a model), and `pagination_class` when its GET
    paginates by hand."""

    def _get_paginator(self):
        # Only a GET lists pages; a POST that answers a list (bulk create) answers a plain array.
        if self.method != "GET":
            return None
        return super()._get_paginator()

    def _error_statuses(self) -> set[int]:
        statuses = set(COMMON_ERROR_STATUSES)
        if self.method in BODY_METHODS:
            statuses |= BODY_ERROR_STATUSES
        statuses |= set(getattr(self.view, "error_statuses", ()))
        return statuses

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for status in sorted(self._error_statuses()):
            if str(status) in responses:
                continue
            response = self._get_response_for_code(ErrorEnvelopeSerializer, str(status), direction=direction)
            codes = _codes_for(status)
            response["description"] = "Error envelope" + (f": {', '.join(codes)}" if codes else "")
            responses[str(status)] = response
        return responses
