import atexit

from django.apps import AppConfig


class TracesConfig(AppConfig):
    name = "traces"
    verbose_name = "Traces"

    def ready(self) -> None:
        from agent_platform.observability.hooks import hub
        from traces.observer import observer

        hub.register(observer)
        atexit.register(observer.drain)
