"""Odd input is answered with a 4xx and its code, never a 500: NUL characters, deep JSON, oversized bodies."""

import json

import pytest

from agent_platform.accounts.models import ApiKey
from agent_platform.api.input_guard import json_depth

pytestmark = pytest.mark.django_db

KEYS_URL = "/api/v1/auth/keys/"


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:500]
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response["X-Request-ID"]
    return error


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/api/v1/agents/?search=%00", "search"),
        ("/api/v1/agents/?category=ma%00th", "category"),
        ("/api/v1/prompts/?search=x%00&tag=a", "search"),
        ("/api/v1/experiments/?name=%00", "name"),
        ("/api/v1/traces/?page=1&agent=%00", "agent"),
        ("/api/v1/usage/?group_by=model&start=%00", "start"),
        ("/api/v1/auth/keys/?page=%00", "page"),
        ("/api/v1/no-such-endpoint/?q=%00", "q"),
    ],
)
def test_a_nul_in_any_query_parameter_is_422_naming_the_parameter(key_client, url, param):
    error = error_of(key_client.get(url), 422, "VALIDATION_ERROR")
    assert error["details"]["field"] == param
    assert param in error["message"] and "NUL" in error["message"]


def test_a_nul_in_a_parameter_name_is_refused_too(key_client):
    error = error_of(key_client.get("/api/v1/agents/?se%00arch=x"), 422, "VALIDATION_ERROR")
    assert error["details"]["field"] == "se\\x00arch"


def test_a_nul_in_the_path_is_refused(key_client):
    error = error_of(key_client.get("/api/v1/prompts/greet%00ing/"), 422, "VALIDATION_ERROR")
    assert error["details"]["field"] == "path"


def test_a_nul_outside_the_api_is_a_plain_400_not_a_500(admin_client):
    response = admin_client.get("/dashboard/traces/?q=%00")
    assert response.status_code == 400 and b"NUL" in response.content


def test_a_nul_in_a_json_string_is_refused_and_nothing_is_written(key_client):
    before = ApiKey.objects.count()
    response = key_client.post(KEYS_URL, {"name": "ci\u0000key"}, format="json")
    assert error_of(response, 422, "VALIDATION_ERROR")["details"]["field"] == "name"
    response = key_client.post(KEYS_URL, {"name": "ok", "meta": {"tags": ["fine", "b\u0000d"]}}, format="json")
    assert error_of(response, 422, "VALIDATION_ERROR")["details"]["field"] == "meta.tags[1]"
    response = key_client.post(KEYS_URL, {"name": "ok", "k\u0000": 1}, format="json")
    assert error_of(response, 422, "VALIDATION_ERROR")["details"]["field"] == "k\\x00"
    assert ApiKey.objects.count() == before


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(key_client):
    response = key_client.post(KEYS_URL, json.dumps({"name": "C:\\u0000"}), content_type="application/json")
    assert response.status_code == 201, response.content
    assert ApiKey.objects.get(pk=response.json()["id"]).name == "C:\\u0000"


def test_a_nul_in_a_form_field_is_refused(key_client):
    response = key_client.post(KEYS_URL, "name=a%00b", content_type="application/x-www-form-urlencoded")
    assert error_of(response, 422, "VALIDATION_ERROR")["details"]["field"] == "name"
    assert not ApiKey.objects.filter(name__startswith="a").exists()


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_json_nested_deeper_than_the_limit_is_input_too_deep(key_client, depth):
    body = '{"name": "deep", "x": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    error = error_of(key_client.post(KEYS_URL, body, content_type="application/json"), 422, "INPUT_TOO_DEEP")
    assert error["details"]["max_depth"] == 64
    assert not ApiKey.objects.filter(name="deep").exists()


def test_json_at_the_depth_limit_and_brackets_inside_strings_pass(key_client):
    at_limit = '{"name": "at-limit", "x": ' + "[" * 63 + "]" * 63 + "}"
    assert key_client.post(KEYS_URL, at_limit, content_type="application/json").status_code == 201
    brackets_in_text = json.dumps({"name": "[" * 80, "note": '{"[' * 500})
    assert key_client.post(KEYS_URL, brackets_in_text, content_type="application/json").status_code == 201


def test_deep_json_is_refused_even_for_views_with_their_own_parsers(key_client):
    # prompts' import view declares its own parser classes: the guard runs before any parser.
    body = "[" * 5000 + "]" * 5000
    response = key_client.post("/api/v1/prompts/import/", body, content_type="application/json")
    error_of(response, 422, "INPUT_TOO_DEEP")


def test_json_depth_counts_only_structure():
    assert json_depth(b'{"a": [1, {"b": []}]}') == 4
    assert json_depth(b'{"a": "[[[[\\"[[[["}') == 1
    assert json_depth(b"42") == 0
    assert json_depth(b'["C:\\\\", [[]], "]]]"]') == 3  # an escaped backslash before a closing quote


def test_a_10_mb_run_message_is_413_request_too_large(key_client):
    message = "x" * (10 * 1024 * 1024)
    response = key_client.post("/api/v1/agents/anything/runs/", {"input": message}, format="json")
    error = error_of(response, 413, "REQUEST_TOO_LARGE")
    assert error["details"]["max_bytes"] == 2_621_440


def test_the_size_limit_follows_the_setting_for_any_body(key_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    error_of(key_client.post(KEYS_URL, {"name": "n" * 2000}, format="json"), 413, "REQUEST_TOO_LARGE")
    response = key_client.post(KEYS_URL, "name=" + "n" * 2000, content_type="application/x-www-form-urlencoded")
    error_of(response, 413, "REQUEST_TOO_LARGE")
    assert key_client.post(KEYS_URL, {"name": "small"}, format="json").status_code == 201


def test_too_many_query_parameters_are_refused_in_the_envelope(key_client):
    query = "&".join(f"p{i}=1" for i in range(1001))
    error = error_of(key_client.get(f"/api/v1/agents/?{query}"), 422, "VALIDATION_ERROR")
    assert error["details"]["max_fields"] == 1000
