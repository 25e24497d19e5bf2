import atexit

from django.apps import AppConfig


class CostsConfig(AppConfig):
    name = "costs"
    verbose_name = "Costs and budgets"

    def ready(self) -> None:
        from agent_platform.observability.hooks import hub
        from agent_platform.observability.metrics import register_scrape_source
        from costs.metrics import budget_gauges
        from costs.observer import observer
        from costs.pricing import price_usage

        hub.register(observer)
        register_scrape_source(budget_gauges)
        hub.set_pricer(price_usage)  # traces prices LLM spans that arrive without a cost through the hub
        atexit.register(observer.buffer.drain)
