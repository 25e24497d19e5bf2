"""The one-time password on the websocket way in: a user who needs one (`user_needs_otp`) opens a socket only from
a session that was OTP-verified at login, as django-otp's middleware decides for HTTP requests."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device

from agent_platform.accounts.selectors import user_needs_otp


@database_sync_to_async
def session_may_open_socket(user, session) -> bool:
    if user is None or not user.is_authenticated:
        return True  # anonymous sockets are the consumer's to refuse
    persistent_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    if persistent_id:
        device = Device.from_persistent_id(persistent_id)
        if device is not None and device.user_id == user.pk:
            return True
    return not user_needs_otp(user=user)


class OTPSessionGuard:
    """ASGI middleware inside channels' AuthMiddlewareStack (it needs `scope["user"]` and `scope["session"]`)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if await session_may_open_socket(scope.get("user"), scope.get("session")):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
