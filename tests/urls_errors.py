"""A URLconf of views that raise each kind of error, to test the envelope independently of any app."""

from django.urls import include, path
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, Throttled
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError
from agent_platform.urls import urlpatterns as project_urlpatterns


class _Body(serializers.Serializer):
    name = serializers.CharField(max_length=5)
    count = serializers.IntegerField(min_value=1)


class Validate(APIView):
    permission_classes = [AllowAny]

    def post(self, request):
        _Body(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


class Forbidden(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        raise PermissionDenied("Only owners may look at this.")


class Limited(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        raise Throttled(wait=7)


class Crash(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        raise ValueError("secret internals must not leak")


class Domain(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        raise PlatformError("Agent 'x' not found", code="AGENT_NOT_FOUND", details={"slug": "x"})


urlpatterns = [
    path(
        "api/test-errors/",
        include(
            [
                path("validate/", Validate.as_view()),
                path("forbidden/", Forbidden.as_view()),
                path("limited/", Limited.as_view()),
                path("crash/", Crash.as_view()),
                path("domain/", Domain.as_view()),
            ]
        ),
    ),
    *project_urlpatterns,
]
