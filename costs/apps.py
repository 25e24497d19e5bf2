import atexit

from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "costs"
    verbose_name = "Costs and budgets"

    def ready(self) -> None:
        from agent_platform.observability.hooks import hub
        from costs.observer import observer
        from costs.pricing import price_usage

        hub.register(observer)
        hub.set_pricer(price_usage)  # traces prices LLM spans that arrive without a cost through the hub
        atexit.register(observer.buffer.drain)
