"""Load a small, realistic demo: a user, an API key (printed once), and the demo content of each app."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from agent_platform.accounts.services import api_key_create

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"


class Command(BaseCommand):
    help = "Create the demo user (demo / demo-password), an API key, and demo agents and prompts. Idempotent."

    def handle(self, *args, **options):
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "demo@example.com", "is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
            issued = api_key_create(user=user, name="demo key")
            self.stdout.write(f"Demo user: {DEMO_USERNAME} / {DEMO_PASSWORD}")
            self.stdout.write(f"Demo API key (shown once): {issued.raw_key}")
        else:
            self.stdout.write(f"Demo user {DEMO_USERNAME!r} already exists; no new API key issued.")
        from prompts.services import demo_prompts_load

        prompts = demo_prompts_load()
        self.stdout.write(f"Demo prompts: {', '.join(p.name for p in prompts)}")
        from agents.services import demo_agents_load

        agents = demo_agents_load()
        self.stdout.write(f"Demo agents: {', '.join(a.slug for a in agents)} (chat at /chat/<slug>/)")
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
