from django.core.management.base import BaseCommand

from costs.services import prices_import_litellm


class Command(BaseCommand):
    help = (
        "Sync prices with litellm's bundled cost map: a changed price gets a new row effective from now (prices edited "
        "by hand are never overwritten). `migrate` and a daily beat task run the same sync."
    )

    def handle(self, *args, **options):
        result = prices_import_litellm()
        self.stdout.write(
            f"created {result.created}, re-priced from now {result.updated}, unchanged {result.unchanged}, "
            f"kept manual {result.skipped_manual}, skipped without prices {result.skipped_invalid}"
        )
