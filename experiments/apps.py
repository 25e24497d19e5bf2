from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"

    def ready(self) -> None:
        # Celery beat: resume experiments whose runner died (no heartbeat for EXPERIMENTS_HEARTBEAT_TIMEOUT).
        from agent_platform.celery import app

        app.conf.beat_schedule = {
            **(app.conf.beat_schedule or {}),
            "experiments-resume-stale": {"task": "experiments.resume_stale", "schedule": 60.0},
        }
