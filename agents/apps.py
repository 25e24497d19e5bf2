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

        # Celery beat: the reaper of runs left "running" by a dead worker.
        from agent_platform.celery import app

        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "agents-reap-stale-runs": {"task": "agents.reap_stale_runs", "schedule": 30.0},
        }
