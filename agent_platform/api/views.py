"""Platform-level API: API keys and JWT tokens."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from agent_platform.accounts.selectors import api_keys_of_user
from agent_platform.accounts.services import api_key_create, api_key_revoke
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


class TokenObtainView(TokenObtainPairView):
    """Username and password for a short-lived access token and a refresh token."""


class TokenRefreshView(TokenRefreshView):
    """A refresh token for a new access token (the old refresh token is revoked: rotation)."""


class TokenRevokeView(TokenBlacklistView):
    """Revoke a refresh token."""


def api_not_found(request, *args, **kwargs):
    """Unknown paths under /api/ answer in the envelope, whatever DEBUG says."""
    from agent_platform.api.errors import error_response

    return error_response(code="NOT_FOUND", message=f"No API endpoint at {request.path}.")
