"""Load agent definitions from a folder of JSON or YAML files (idempotent: re-loading updates)."""

from django.core.management.base import BaseCommand, CommandError

from agent_platform.api.errors import PlatformError
from agents.catalog import catalog_load


class Command(BaseCommand):
    help = (
        "Load agent definitions from the .json/.yaml/.yml files of a folder. A file holds one agent, a list of agents, "
        'or {"agents": [...]}. Existing agents (same slug) are updated. Exits with status 1 if any is invalid.'
    )

    def add_arguments(self, parser):
        parser.add_argument("folder")

    def handle(self, *args, folder: str, **options):
        try:
            report = catalog_load(folder=folder)
        except PlatformError as exc:
            raise CommandError(exc.message) from None
        for slug in report.created:
            self.stdout.write(f"created   {slug}")
        for slug in report.updated:
            self.stdout.write(f"updated   {slug}")
        for item in report.invalid:
            who = f" ({item['slug']})" if item["slug"] else ""
            self.stderr.write(f"invalid   {item['file']}{who}: {item['field']}: {item['message']}")
        summary = (
            f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
            f"{len({i['file'] for i in report.invalid})} invalid"
        )
        if report.invalid:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))
