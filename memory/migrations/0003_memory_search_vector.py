"""A stored full-text vector per memory, and the GIN index over it (PostgreSQL only).

Ranking a keyword search with ts_rank over ``to_tsvector(text)`` re-parsed the text of
every matching row on each query (most of hybrid search's time at 10k memories); the
stored column makes ranking a read. The expression index of 0002 is replaced by an
index on the column. On SQLite the column exists (as text, unused) and search falls back
to a keyword match.
"""

import django.contrib.postgres.search
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations

OLD = GinIndex(SearchVector("text", config="english"), name="memory_text_search")
NEW = GinIndex(fields=["search_vector"], name="memory_search_vector")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    Memory = apps.get_model("memory", "Memory")
    schema_editor.remove_index(Memory, OLD)
    Memory.objects.update(search_vector=SearchVector("text", config="english"))
    schema_editor.add_index(Memory, NEW)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    Memory = apps.get_model("memory", "Memory")
    schema_editor.remove_index(Memory, NEW)
    schema_editor.add_index(Memory, OLD)


class Migration(migrations.Migration):
    dependencies = [("memory", "0002_memory_text_search")]

    operations = [
        migrations.AddField(
            model_name="memory",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(forwards, backwards),
    ]
