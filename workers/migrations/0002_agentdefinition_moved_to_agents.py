"""AgentDefinition now belongs to the agents app (agents 0001); its table stays."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("workers", "0001_agent_definitions"),
        ("agents", "0001_agent_definitions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AgentDefinition")],
            database_operations=[],
        ),
    ]
