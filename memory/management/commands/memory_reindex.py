"""`python manage.py memory_reindex`: rebuild Chroma's memory index from PostgreSQL.

PostgreSQL holds every memory; Chroma only its vector. Without options the collection
is dropped and every live memory is embedded and indexed again (after Chroma's data was
lost, or the embedding model changed). ``--pending`` only repairs: it indexes the rows
Chroma does not reflect yet (a write that reached PostgreSQL while Chroma was down, an
edit or a delete) and is cheap enough for a cron job.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from memory.chroma import ChromaUnavailable, chroma_count
from memory.models import Memory
from memory.services import memory_index_pending, memory_reindex_all


class Command(BaseCommand):
    help = "Rebuild the Chroma memory index from PostgreSQL (or, with --pending, repair it)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--pending", action="store_true", help="Only index rows Chroma does not reflect yet.")

    def handle(self, *args, **options) -> None:
        started = time.monotonic()
        try:
            skipped: list = []
            if options["pending"]:
                indexed = memory_index_pending(skipped=skipped)
            else:
                indexed = memory_reindex_all(skipped=skipped)
            # A row Chroma cannot take is reported and passed over, not a reason to stop.
            for memory_id in skipped:
                self.stderr.write(f"skipped memory {memory_id}: its metadata cannot be stored in chroma")
            left = Memory.objects.filter(indexed_at__isnull=True).exclude(id__in=skipped).count()
            if left:
                raise CommandError(f"indexed {indexed}, but {left} memories are still not indexed (is Chroma up?)")
            self.stdout.write(
                f"indexed {indexed} memories ({len(skipped)} skipped) in {time.monotonic() - started:.1f}s; the index holds {chroma_count()}"
            )
        except ChromaUnavailable as exc:
            raise CommandError(f"chroma is unavailable: {exc}") from exc
