"""The GIN index behind hybrid search's full-text side, on PostgreSQL only.

It is built from the very expression memory.selectors queries with
(``SearchVector("text", config="english")``), so PostgreSQL can use it. SQLite (the
laptop default) has no such index and search falls back to a keyword match there; the
index is therefore not declared in Memory.Meta, which would make SQLite's migrate fail.
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import migrations

INDEX = GinIndex(SearchVector("text", config="english"), name="memory_text_search")


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.add_index(apps.get_model("memory", "Memory"), INDEX)


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(apps.get_model("memory", "Memory"), INDEX)


class Migration(migrations.Migration):
    dependencies = [("memory", "0001_memory_records")]

    operations = [migrations.RunPython(create_index, drop_index)]
