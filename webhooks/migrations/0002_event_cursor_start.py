"""Start the webhooks' event cursor at the newest event: history older than the webhooks
is never delivered, and the first pass does not scan the whole event log."""

from __future__ import annotations

from django.db import migrations
from django.db.models import Max


def cursor_start(apps, schema_editor) -> None:
    JobEvent = apps.get_model("jobs", "JobEvent")
    EventCursor = apps.get_model("webhooks", "EventCursor")
    newest = JobEvent.objects.aggregate(m=Max("id"))["m"] or 0
    EventCursor.objects.update_or_create(name="webhooks", defaults={"last_event_id": newest})


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0001_initial"), ("jobs", "0005_job_purged_at")]

    operations = [migrations.RunPython(cursor_start, migrations.RunPython.noop)]
