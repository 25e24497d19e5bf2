from django.apps import AppConfig


class LLMConfig(AppConfig):
    name = "agent_platform.llm"
    label = "llm"
    verbose_name = "LLM endpoints and credentials"

    def ready(self) -> None:
        from django.db import transaction
        from django.db.models.signals import post_delete, post_save

        from agent_platform.llm.models import ModelEndpoint, ProviderCredential
        from agent_platform.llm.registry import registry

        def invalidate(sender, **kwargs) -> None:
            # This process forgets at once; other processes are told after the commit, so they never reload (and
            # keep) the row as it was before the change.
            registry.invalidate(broadcast=False)
            transaction.on_commit(registry.invalidate)

        for model in (ModelEndpoint, ProviderCredential):
            post_save.connect(invalidate, sender=model, dispatch_uid=f"llm-invalidate-save-{model.__name__}")
            post_delete.connect(invalidate, sender=model, dispatch_uid=f"llm-invalidate-delete-{model.__name__}")
