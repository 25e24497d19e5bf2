"""Beat schedules (price import, usage rollups) and a demo price for the mock provider."""

import datetime
from decimal import Decimal

from django.db import migrations

SCHEDULES = [
    # (name, task, crontab minute, hour, day_of_week)
    ("costs: import prices from litellm", "costs.import_prices", "40", "4", "1"),
    ("costs: refresh daily usage rollups", "costs.refresh_usage_rollups", "5", "*", "*"),
]
DEMO_NOTE = "demo price for the mock provider"


def forwards(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minute, hour, day_of_week in SCHEDULES:
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_week=day_of_week, day_of_month="*", month_of_year="*", timezone="UTC"
        )
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "crontab": crontab})
    Price = apps.get_model("costs", "Price")
    Price.objects.get_or_create(
        provider="mock",
        model="mock/*",
        source="manual",
        effective_from=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC),
        defaults={
            "input_per_million": Decimal("0.50"),
            "output_per_million": Decimal("1.50"),
            "cached_input_per_million": Decimal("0.25"),
            "currency": "USD",
            "notes": DEMO_NOTE,
        },
    )


def backwards(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()
    apps.get_model("costs", "Price").objects.filter(provider="mock", notes=DEMO_NOTE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("costs", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
