"""API authentication: `Authorization: Bearer ap_...` API keys, then JWT, then the browser session.

A user who needs a one-time password (`user_needs_otp`) gets in by JWT only with a token issued after one was
checked (the `otp` claim), and by session only when the session was OTP-verified at login."""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework_simplejwt.authentication import JWTAuthentication as SimpleJWTAuthentication

from agent_platform.accounts.selectors import api_key_by_raw, user_needs_otp
from agent_platform.accounts.services import KEY_NAMESPACE, api_key_touch
from agent_platform.observability.context import current_caller, set_caller


class _AuthFailed(exceptions.AuthenticationFailed):
    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.platform_code = code


def _bind_caller(request, *, user_id: int, api_key_id: int | None, team_id: int | None) -> None:
    # The caller context lives for the rest of the request (RequestIdMiddleware's context scope).
    set_caller(replace(current_caller(), user_id=user_id, api_key_id=api_key_id, team_id=team_id))
    request._request.api_key_id = api_key_id


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0] != self.keyword or len(parts) != 2 or not parts[1].startswith(f"{KEY_NAMESPACE}_"):
            return None  # not ours: JWT may claim it
        api_key = api_key_by_raw(raw_key=parts[1])
        if api_key is None:
            raise _AuthFailed("Invalid API key.", "AUTH_INVALID_CREDENTIALS")
        if api_key.is_revoked:
            raise _AuthFailed("This API key has been revoked.", "AUTH_TOKEN_BLACKLISTED")
        if api_key.is_expired:
            raise _AuthFailed("This API key has expired.", "AUTH_TOKEN_EXPIRED")
        if not api_key.user.is_active:
            raise _AuthFailed("The key's user is inactive.", "AUTH_INVALID_CREDENTIALS")
        api_key_touch(api_key=api_key)
        _bind_caller(request, user_id=api_key.user_id, api_key_id=api_key.pk, team_id=api_key.team_id)
        return api_key.user, api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class JWTAuthentication(SimpleJWTAuthentication):
    def authenticate(self, request):
        header = self.get_header(request)
        if header is not None:
            parts = header.split()
            if len(parts) != 2 or parts[0] not in (b"Bearer", b"JWT"):
                raise _AuthFailed("Malformed Authorization header; use 'Bearer <token>'.", "AUTH_INVALID_CREDENTIALS")
        result = super().authenticate(request)
        if result is not None:
            user, token = result
            if not token.get(settings.JWT_OTP_CLAIM) and user_needs_otp(user=user):
                # issued before the user enrolled a device, or by code that skipped the token endpoint
                raise otp_required("This token was issued without a one-time password; get one with otp_token.")
            _bind_caller(request, user_id=user.pk, api_key_id=None, team_id=None)
        return result


class SessionAuthentication(authentication.SessionAuthentication):
    """The browser session; a failed CSRF check answers CSRF_FAILED, and a session that skipped the one-time
    password of a user who needs one is refused."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None:
            user = result[0]
            if not _session_verified(request) and user_needs_otp(user=user):
                raise otp_required("This session was opened without a one-time password; log in again with it.")
        return result

    def enforce_csrf(self, request):
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as exc:
            from agent_platform.api.errors import PlatformError  # errors imports DRF, whose settings import us

            raise PlatformError(str(exc.detail), code="CSRF_FAILED") from None


def _session_verified(request) -> bool:
    user = getattr(request._request, "user", None)
    is_verified = getattr(user, "is_verified", None)  # set by django_otp's OTPMiddleware
    return bool(is_verified and is_verified())


def otp_required(message: str) -> Exception:
    from agent_platform.api.errors import PlatformError  # errors imports DRF, whose settings import us

    return PlatformError(message, code="OTP_REQUIRED", headers={"WWW-Authenticate": 'Bearer realm="api"'})


def otp_passed(request) -> bool:
    """Whether this request's credential proves a one-time password: an OTP-verified session or a JWT carrying
    the OTP claim. An API key never does (it cannot mint what it would need OTP for)."""
    auth = request.auth
    if auth is None:
        return _session_verified(request)
    return hasattr(auth, "payload") and bool(auth.payload.get(settings.JWT_OTP_CLAIM))


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "agent_platform.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "API key `ap_<prefix>_<secret>`"}


class JWTScheme(OpenApiAuthenticationExtension):
    target_class = "agent_platform.api.authentication.JWTAuthentication"
    name = "JWTAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "agent_platform.api.authentication.SessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
