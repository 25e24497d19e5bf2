"""The websocket Origin check: a socket opens only from this site's own origin, port included, or a trusted one.

Channels' `AllowedHostsOriginValidator` compares host names only, so any page served from an allowed host on
another port (another application on the same machine) could open a socket with the user's session cookie.
Here the Origin must match the request's Host header in host and port (a browser's same-origin rule), the host
must be in ALLOWED_HOSTS, or the Origin must be listed in CSRF_TRUSTED_ORIGINS (scheme, host and port).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_parts(value: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header, the scheme's default port filled in; None if it is not one."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[parts.scheme]


def _trusted(origin: tuple[str, str, int]) -> bool:
    return any(_origin_parts(trusted) == origin for trusted in settings.CSRF_TRUSTED_ORIGINS)


def origin_allowed(origin_header: str | None, host_header: str | None) -> bool:
    if not origin_header:
        return False
    origin = _origin_parts(origin_header)
    if origin is None:
        return False
    if _trusted(origin):
        return True
    scheme, origin_host, origin_port = origin
    if host_header:
        host, port = split_domain_port(host_header.lower())
        if port and not port.isdigit():
            return False
        # No port in Host means the default port of the scheme the page itself was loaded with.
        host_port = int(port) if port else DEFAULT_PORTS[scheme]
        if (host, host_port) != (origin_host, origin_port):
            return False
    elif origin_port != DEFAULT_PORTS[scheme]:
        # No Host header to compare with: an allowed host answers on its scheme's default port only.
        return False
    return validate_host(origin_host, settings.ALLOWED_HOSTS)


class SameOriginValidator:
    """ASGI middleware for websocket scopes: deny (HTTP 403 at the handshake) unless `origin_allowed`."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator guards websocket connections only")
        headers = {}
        for name, value in scope.get("headers", []):
            if name in (b"origin", b"host"):
                headers[name] = value.decode("latin-1")
        if origin_allowed(headers.get(b"origin"), headers.get(b"host")):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
