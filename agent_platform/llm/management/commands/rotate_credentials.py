"""Re-encrypt every provider credential with the newest key of CREDENTIALS_ENCRYPTION_KEYS.

Rotation: put a new key FIRST in CREDENTIALS_ENCRYPTION_KEYS (keep the old ones after it), restart, run this
command, then remove the old keys.
"""

from django.core.management.base import BaseCommand, CommandError

from agent_platform.llm.services import credentials_rotate


class Command(BaseCommand):
    help = "Re-encrypt stored provider credentials with the newest CREDENTIALS_ENCRYPTION_KEYS key."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report what would change, write nothing.")

    def handle(self, *args, dry_run: bool = False, **options):
        result = credentials_rotate(dry_run=dry_run)
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        self.stdout.write(
            f"{result.total} credential(s): {verb} {result.reencrypted}, {result.already_current} already current, "
            f"{len(result.failed)} unreadable."
        )
        if result.failed:
            raise CommandError(
                "Cannot decrypt with any configured key: " + ", ".join(result.failed) + ". Restore the old key "
                "to CREDENTIALS_ENCRYPTION_KEYS (after the new one) and run again."
            )
