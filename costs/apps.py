import atexit

from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "costs"
    verbose_name = "Costs and budgets"

    def ready(self) -> None:
        from agent_platform.observability.hooks import hub
        from costs.observer import observer

        hub.register(observer)
        atexit.register(observer.buffer.drain)
