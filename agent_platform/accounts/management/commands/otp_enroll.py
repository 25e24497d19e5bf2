"""Enrol an admin's OTP devices: a TOTP device (prints its provisioning URI for an authenticator app) and
optionally single-use static backup tokens."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Create a TOTP device (and backup tokens) for a user; prints the otpauth:// URI to scan."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--device-name", default="authenticator")
        parser.add_argument("--backup-tokens", type=int, default=5, help="static backup tokens to create (0: none)")

    @transaction.atomic
    def handle(self, *args, username: str, device_name: str, backup_tokens: int, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user named {username!r}; create it with `manage.py createsuperuser`.") from exc
        if not user.is_staff:
            raise CommandError(f"{username!r} is not staff and cannot use the admin.")
        device = TOTPDevice.objects.create(user=user, name=device_name, confirmed=True)
        self.stdout.write(f"TOTP device {device_name!r} created for {username}.")
        self.stdout.write("Scan this provisioning URI with an authenticator app:")
        self.stdout.write(device.config_url)
        if backup_tokens > 0:
            static, _ = StaticDevice.objects.get_or_create(user=user, name="backup", defaults={"confirmed": True})
            tokens = [StaticToken.random_token() for _ in range(backup_tokens)]
            for token in tokens:
                static.token_set.create(token=token)
            self.stdout.write("Single-use backup tokens (store them safely): " + " ".join(tokens))
