"""Small helpers for tests that call the API: a client with a bearer token, the error code of a response."""

from rest_framework.test import APIClient


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def code_of(response) -> str:
    return response.json()["error"]["code"]
