"""Platform-level API: API keys and JWT tokens."""

from __future__ import annotations

import sys

from django.conf import settings
from django.contrib.auth.models import update_last_login
from django.shortcuts import get_object_or_404
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import server_error as django_server_error
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.serializers import TokenObtainSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from agent_platform.accounts.selectors import api_keys_of_user, user_needs_otp
from agent_platform.accounts.services import api_key_create, api_key_revoke, otp_verify
from agent_platform.api.authentication import otp_passed, otp_required
from agent_platform.api.errors import PlatformError, error_response
from agent_platform.api.pagination import PagePagination


class ApiKeySerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    prefix = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    last_used_at = serializers.DateTimeField(read_only=True, allow_null=True)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    revoked_at = serializers.DateTimeField(read_only=True, allow_null=True)


class IssuedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The whole key. Shown once; store it now.")


class ApiKeyListView(APIView):
    pagination_class = PagePagination

    @extend_schema(responses=ApiKeySerializer(many=True))
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(api_keys_of_user(user=request.user), request, view=self)
        return paginator.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(request=ApiKeySerializer, responses={201: IssuedApiKeySerializer})
    def post(self, request):
        if not otp_passed(request) and user_needs_otp(user=request.user):
            raise PlatformError(
                "Minting an API key needs a one-time password: use an OTP-verified session or a JWT obtained "
                "with otp_token.",
                code="POLICY_DENIED",
                details={"reason": "OTP_REQUIRED"},
            )
        serializer = ApiKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = api_key_create(
            user=request.user,
            name=serializer.validated_data["name"],
            expires_at=serializer.validated_data.get("expires_at"),
        )
        body = dict(ApiKeySerializer(issued.api_key).data, key=issued.raw_key)
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    @extend_schema(responses=ApiKeySerializer)
    def get(self, request, key_id: int):
        return Response(ApiKeySerializer(get_object_or_404(api_keys_of_user(user=request.user), pk=key_id)).data)

    @extend_schema(responses={200: ApiKeySerializer})
    def delete(self, request, key_id: int):
        api_key = api_key_revoke(api_key=get_object_or_404(api_keys_of_user(user=request.user), pk=key_id))
        return Response(ApiKeySerializer(api_key).data)


class OTPTokenObtainSerializer(TokenObtainSerializer):
    """Username, password and, for a user who needs one, a one-time password (`otp_token`; `otp_device` picks the
    device by its persistent id). The tokens carry the OTP claim when one was checked."""

    token_class = RefreshToken
    otp_token = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=64)
    otp_device = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=255)
    refresh = serializers.CharField(read_only=True)
    access = serializers.CharField(read_only=True)

    def validate(self, attrs):
        super().validate(attrs)  # password: sets self.user or raises AUTH_INVALID_CREDENTIALS
        otp_checked = False
        if user_needs_otp(user=self.user):
            token = attrs.get("otp_token") or ""
            if not token:
                raise otp_required("This account needs a one-time password: send otp_token.")
            if otp_verify(user=self.user, token=token, device_id=attrs.get("otp_device") or None) is None:
                raise otp_required("The one-time password is wrong or was already used.")
            otp_checked = True
        refresh = self.get_token(self.user)
        if otp_checked:
            refresh[settings.JWT_OTP_CLAIM] = True  # copied into every access token made from it, and on rotation
        if jwt_settings.UPDATE_LAST_LOGIN:
            update_last_login(None, self.user)
        return {"refresh": str(refresh), "access": str(refresh.access_token)}


class TokenObtainView(TokenObtainPairView):
    """Username and password (plus `otp_token` for an account with an OTP device, or any staff account in
    production) for a short-lived access token and a refresh token."""

    serializer_class = OTPTokenObtainSerializer


class TokenRefreshView(TokenRefreshView):
    """A refresh token for a new access token (the old refresh token is revoked: rotation)."""


class TokenRevokeView(TokenBlacklistView):
    """Revoke a refresh token."""


@csrf_exempt  # any method: a POST to an unknown path is a 404, not a CSRF page
def api_not_found(request, *args, **kwargs):
    """Unknown paths under /api/ answer in the envelope, whatever DEBUG says and whatever the method."""
    return error_response(code="NOT_FOUND", message=f"No API endpoint at {request.path}.")


def csrf_failure(request, reason: str = ""):
    """CSRF_FAILURE_VIEW: the envelope (CSRF_FAILED) under /api/, Django's own page elsewhere."""
    if request.path.startswith("/api/"):
        return error_response(code="CSRF_FAILED", message=f"CSRF check failed: {reason}", details={"reason": reason})
    return django_csrf_failure(request, reason=reason)


def server_error(request):
    """handler500, for what escapes a middleware (e.g. the session middleware when the database is down): the
    envelope under /api/, a 503 page with Retry-After for a service outage, Django's 500 page otherwise."""
    exception = sys.exc_info()[1]  # Django calls this inside its `except` block
    if exception is not None:
        from agent_platform.api.middleware import error_response_for

        response = error_response_for(request, exception)
        if response is not None:
            return response
    elif request.path.startswith("/api/"):
        return error_response(code="INTERNAL_ERROR", message="An unexpected error occurred.")
    return django_server_error(request)
