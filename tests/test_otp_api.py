"""A one-time password on every way in for a user who has an OTP device (and for staff with ADMIN_REQUIRE_OTP):
the JWT token endpoint, JWTs, API sessions, the admin login and the minting of API keys."""

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from agent_platform.accounts.models import ApiKey
from tests.support.api import bearer, code_of

pytestmark = pytest.mark.django_db

TOKEN_URL = "/api/v1/auth/token/"
KEYS_URL = "/api/v1/auth/keys/"
PASSWORD = "correct-horse-battery"


@pytest.fixture
def device(admin_user):
    return TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)


def current_code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift):06d}"


def obtain(**body):
    return APIClient().post(TOKEN_URL, {"username": "root", "password": PASSWORD, **body}, format="json")


def test_password_only_token_is_refused_for_a_user_with_a_device(device):
    response = obtain()
    assert response.status_code == 401 and code_of(response) == "OTP_REQUIRED"
    assert "access" not in response.json() and response["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_code_is_refused(device):
    wrong = f"{(int(current_code(device)) + 1) % 1_000_000:06d}"
    response = obtain(otp_token=wrong)
    assert response.status_code == 401 and code_of(response) == "OTP_REQUIRED"
    assert "access" not in response.json()


def test_a_code_is_good_once(device):
    # (no failed attempt first: django-otp then throttles the device for a moment, by design)
    code = current_code(device)
    assert obtain(otp_token=code).status_code == 200
    replay = obtain(otp_token=code)
    assert replay.status_code == 401 and code_of(replay) == "OTP_REQUIRED"


def test_the_right_totp_gives_tokens_that_carry_the_otp_claim(device, admin_user):
    response = obtain(otp_token=current_code(device))
    assert response.status_code == 200, response.content
    access = AccessToken(response.json()["access"])
    assert access["otp"] is True and int(access["user_id"]) == admin_user.pk
    assert bearer(response.json()["access"]).get(KEYS_URL).status_code == 200
    # the claim survives refresh (and rotation)
    refreshed = APIClient().post(f"{TOKEN_URL}refresh/", {"refresh": response.json()["refresh"]}, format="json")
    assert refreshed.status_code == 200 and AccessToken(refreshed.json()["access"])["otp"] is True


def test_a_backup_code_works_once(admin_user, device):
    static = StaticDevice.objects.create(user=admin_user, name="backup", confirmed=True)
    static.token_set.create(token="abcd2345")
    assert obtain(otp_token="abcd2345").status_code == 200
    assert code_of(obtain(otp_token="abcd2345")) == "OTP_REQUIRED"


def test_a_user_without_a_device_still_logs_in_with_the_password(user):
    response = APIClient().post(TOKEN_URL, {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert "otp" not in AccessToken(response.json()["access"]).payload


def test_staff_need_otp_when_admin_require_otp_is_on_even_without_a_device(admin_user, settings):
    settings.ADMIN_REQUIRE_OTP = True
    assert code_of(obtain()) == "OTP_REQUIRED"


def test_a_jwt_without_the_otp_claim_is_refused_for_a_user_with_a_device(admin_user, device):
    # e.g. issued before the device was enrolled
    response = bearer(str(RefreshToken.for_user(admin_user).access_token)).get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "OTP_REQUIRED"


def test_an_unverified_session_is_refused_for_a_user_with_a_device(admin_user, device):
    browser = APIClient()
    browser.force_login(admin_user)  # a password-only session
    response = browser.get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "OTP_REQUIRED"


def test_api_key_minting_needs_otp_for_a_user_with_a_device(admin_user, device):
    from agent_platform.accounts.services import api_key_create

    # an API key of such a user cannot mint another key
    raw = api_key_create(user=admin_user, name="old").raw_key
    response = bearer(raw).post(KEYS_URL, {"name": "minted"}, format="json")
    assert response.status_code == 403 and code_of(response) == "POLICY_DENIED"
    assert response.json()["error"]["details"]["reason"] == "OTP_REQUIRED"
    assert not ApiKey.objects.filter(name="minted").exists()
    # a JWT obtained with the one-time password can
    access = obtain(otp_token=current_code(device)).json()["access"]
    response = bearer(access).post(KEYS_URL, {"name": "minted"}, format="json")
    assert response.status_code == 201 and response.json()["key"].startswith("ap_")


def test_api_key_minting_from_an_otp_verified_admin_session(admin_user, device, client):
    login = {"username": "root", "password": PASSWORD, "this_is_the_login_form": "1"}
    refused = client.post("/admin/login/?next=/admin/", login)
    assert refused.status_code == 200 and "_auth_user_id" not in client.session  # the form asks for the code
    ok = client.post(
        "/admin/login/?next=/admin/", {**login, "otp_device": device.persistent_id, "otp_token": current_code(device)}
    )
    assert ok.status_code == 302
    response = client.post(KEYS_URL, {"name": "from-session"}, content_type="application/json")
    # the admin session is OTP-verified, so it may mint; (the test client skips CSRF checks)
    assert response.status_code == 201, response.content


def test_the_admin_lets_a_device_user_in_only_with_the_code_even_in_development(admin_user, device, client, settings):
    settings.ADMIN_REQUIRE_OTP = False
    client.force_login(admin_user)  # a session that skipped the code
    assert client.get("/admin/").status_code == 302


def _session_cookie(user, device=None) -> bytes:
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    browser = Client()
    browser.force_login(user)
    if device is not None:
        session = browser.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id  # what django-otp's login() stores
        session.save()
    return f"sessionid={browser.cookies['sessionid'].value}".encode()


async def _socket_opens(cookie: bytes) -> bool:
    from channels.testing import WebsocketCommunicator

    from agent_platform.asgi import application

    communicator = WebsocketCommunicator(
        application, "/ws/ping/", headers=[(b"origin", b"http://localhost"), (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect()
    if connected:
        await communicator.disconnect()
    return connected


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_needs_an_otp_verified_session_for_a_user_with_a_device(django_user_model):
    from asgiref.sync import sync_to_async

    @sync_to_async
    def setup():
        root = django_user_model.objects.create_superuser(username="root", password=PASSWORD, email="r@x.io")
        alice = django_user_model.objects.create_user(username="alice", password=PASSWORD, email="a@x.io")
        device = TOTPDevice.objects.create(user=root, name="phone", confirmed=True)
        return _session_cookie(root), _session_cookie(root, device), _session_cookie(alice)

    password_only, verified, no_device_user = await setup()
    assert await _socket_opens(password_only) is False
    assert await _socket_opens(verified) is True
    assert await _socket_opens(no_device_user) is True
