"""The container health check: `/health/ready/` on this machine, asked with a Host header the site serves.

Run as `python -m agent_platform.healthcheck` (docker-compose's web health check). Production refuses a Host that is
not in ALLOWED_HOSTS (400), so asking for 127.0.0.1 would never turn healthy: the first allowed host is sent instead
(a leading dot, Django's "this domain and its subdomains", is dropped). It imports no Django: it runs every 10 s.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def health_host(allowed_hosts: str) -> str:
    hosts = [host.strip() for host in allowed_hosts.split(",") if host.strip()]
    return hosts[0].lstrip(".") if hosts else "localhost"


def main() -> int:
    port = os.environ.get("PORT", "8000")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/health/ready/", headers={"Host": health_host(os.environ.get("ALLOWED_HOSTS", ""))}
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 (a fixed http:// URL)
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
