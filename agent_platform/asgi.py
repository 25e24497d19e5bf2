"""ASGI entry point, served by daphne: HTTP to Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent_platform.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from agent_platform.routing import websocket_urlpatterns  # noqa: E402
from agent_platform.websocket_origin import SameOriginValidator  # noqa: E402
from agent_platform.websocket_otp import OTPSessionGuard  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(OTPSessionGuard(URLRouter(websocket_urlpatterns)))),
    }
)
