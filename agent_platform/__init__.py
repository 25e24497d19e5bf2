# The project package is `agent_platform`, never `platform`: that name would hide the standard library's
# `platform` module, which `uuid` imports at start-up (see DESIGN.md).
from agent_platform.celery import app as celery_app

__all__ = ("celery_app",)
