from django.core.management.base import BaseCommand

from costs.services import prices_import_litellm


class Command(BaseCommand):
    help = "Import or update prices from litellm's bundled cost map (prices edited by hand are never overwritten)."

    def handle(self, *args, **options):
        result = prices_import_litellm()
        self.stdout.write(
            f"created {result.created}, updated {result.updated}, unchanged {result.unchanged}, "
            f"kept manual {result.skipped_manual}, skipped without prices {result.skipped_invalid}"
        )
