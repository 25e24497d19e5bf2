import atexit

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _import_bundled_prices(sender, *, using: str, plan=None, **_kwargs) -> None:
    """post_migrate: real models are priced on a fresh database. `flush` sends the signal too, without a plan: an
    emptied database stays empty, as after a data migration."""
    if plan is None:
        return
    from costs.services import prices_import_on_migrate

    prices_import_on_migrate(using=using)


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
        post_migrate.connect(_import_bundled_prices, sender=self, dispatch_uid="costs.import_bundled_prices")
