"""Per-agent rate limits: requests and LLM tokens per minute (agents.rate_limits).

The table is still workers_agentdefinition (created by workers 0001); agents 0001 took
over its state without touching it, and since then changes are ordinary operations on
that table, as in 0002 and 0003: these two columns and their checks really are added."""

import django.core.validators
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0003_agent_reply_secret'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='agentdefinition',
            name='rate_limit_rpm',
            field=models.PositiveIntegerField(blank=True, help_text='Requests (dispatched attempts) per minute, over all workers; empty is unlimited.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddField(
            model_name='agentdefinition',
            name='rate_limit_tpm',
            field=models.PositiveIntegerField(blank=True, help_text='LLM tokens per minute (as the provider reported them), over all workers; empty is unlimited.', null=True, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AddConstraint(
            model_name='agentdefinition',
            constraint=models.CheckConstraint(condition=models.Q(('rate_limit_rpm__isnull', True), ('rate_limit_rpm__gte', 1), _connector='OR'), name='agentdef_rate_limit_rpm_positive'),
        ),
        migrations.AddConstraint(
            model_name='agentdefinition',
            constraint=models.CheckConstraint(condition=models.Q(('rate_limit_tpm__isnull', True), ('rate_limit_tpm__gte', 1), _connector='OR'), name='agentdef_rate_limit_tpm_positive'),
        ),
    ]
