"""`python manage.py purge`: purge finished jobs and expired memories now, in batches.

The orchestrator does the same a slice at a time (retention_step); this command works a
backlog off in one go, e.g. after turning retention on for a large database."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from retention.services import retention_run


class Command(BaseCommand):
    help = "Purge finished jobs past their retention, and expired memories."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=float, help="Override AGENTBUS_RETENTION_DAYS for users without a policy.")
        parser.add_argument("--pause", type=float, default=0.0, help="Seconds to sleep between batches.")
        parser.add_argument("--budget", type=float, default=float("inf"), help="Stop after this many seconds.")

    def handle(self, *args, **options) -> None:
        if options["days"] is None and settings.AGENTBUS_RETENTION_DAYS <= 0:
            self.stderr.write("AGENTBUS_RETENTION_DAYS is 0 (keep for ever): only users' own policies apply.")
        done = retention_run(budget_seconds=options["budget"], days=options["days"], pause=options["pause"])
        self.stdout.write(f"purged {done['jobs']} job(s) and {done['memories']} expired memories")
