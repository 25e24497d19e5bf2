from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "agent_platform.observability"
    label = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from agent_platform.observability.hooks import hub
        from agent_platform.observability.metrics import metrics_observer

        hub.register(metrics_observer)
