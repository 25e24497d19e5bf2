from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from django.conf import settings
        from django.utils.module_loading import import_string

        from agent_platform.observability.metrics import register_scrape_source
        from agents.metrics import run_queue_gauges
        from agents.tools import builtins  # noqa: F401 - registers the built-in tools
        from agents.tools.registry import registry

        register_scrape_source(run_queue_gauges)
        for path in getattr(settings, "AGENT_TOOLS", []):
            registry.register(import_string(path))

        # Celery beat schedules the reaper and the dispatch relay: see agent_platform.celery.
