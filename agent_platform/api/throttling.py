"""Throttles backed by the cache (Redis on the full stack, so limits hold across processes)."""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class _CurrentRatesMixin:
    # DRF copies the rates at import time; read them when the throttle is built so settings changes apply.
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class UserThrottle(_CurrentRatesMixin, UserRateThrottle):
    """Per user; requests made with an API key are counted per key."""

    def get_cache_key(self, request, view):
        key_id = getattr(request, "api_key_id", None)
        if key_id is not None:
            return self.cache_format % {"scope": self.scope, "ident": f"key{key_id}"}
        return super().get_cache_key(request, view)


class AnonThrottle(_CurrentRatesMixin, AnonRateThrottle):
    pass
