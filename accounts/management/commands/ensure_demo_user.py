"""Creates the `demo` user for `make run` when the database has no user yet."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import ApiToken


class Command(BaseCommand):
    help = "Create a demo superuser (demo/demo) if no user exists, and print how to log in."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if not settings.DEBUG:
            # A known password on a superuser is only for a laptop (`make run` sets DEBUG=1).
            self.stdout.write("DEBUG is off: no demo user is created; use `createsuperuser`.")
            return
        if User.objects.exists():
            self.stdout.write("Users exist; log in with yours at /accounts/login/.")
            return
        user = User.objects.create_superuser("demo", "demo@example.com", "demo")
        _, raw = ApiToken.issue(user=user, name="make run")
        self.stdout.write(
            self.style.SUCCESS(
                "Created user demo / password demo (superuser).\n"
                f"  API token: {raw}\n"
                "  Log in at http://127.0.0.1:8000/accounts/login/"
            )
        )
