"""AgentDefinition moved from the workers app to agents: the same table
(workers_agentdefinition, created by workers 0001), now owned by this app's state."""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("workers", "0001_agent_definitions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AgentDefinition',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True, validators=[django.core.validators.RegexValidator('^[A-Za-z0-9_.-]{1,100}$', '1-100 characters of A-Z a-z 0-9 _ . -')])),
                        ('kind', models.CharField(choices=[('http', 'Http'), ('llm', 'Llm')], max_length=10)),
                        ('description', models.CharField(blank=True, max_length=500)),
                        ('queue', models.CharField(default='default', max_length=100)),
                        ('timeout', models.PositiveIntegerField(default=60, help_text='Seconds per attempt.', validators=[django.core.validators.MinValueValidator(1)])),
                        ('max_attempts', models.PositiveSmallIntegerField(default=3, validators=[django.core.validators.MinValueValidator(1)])),
                        ('retry_backoff', models.FloatField(blank=True, help_text='Base seconds of exponential backoff; empty uses the server default.', null=True)),
                        ('concurrency', models.PositiveIntegerField(blank=True, help_text='At most this many tasks of this agent run at once; empty is unlimited.', null=True)),
                        ('breaker_fail_max', models.PositiveSmallIntegerField(default=5, help_text='Consecutive failures that open the circuit.', validators=[django.core.validators.MinValueValidator(1)])),
                        ('breaker_reset_timeout', models.PositiveIntegerField(default=30, help_text='Seconds an open circuit waits before a trial call.', validators=[django.core.validators.MinValueValidator(1)])),
                        ('url', models.URLField(blank=True, max_length=500)),
                        ('secret', models.CharField(blank=True, help_text='HMAC key for the request signature.', max_length=200)),
                        ('model', models.CharField(blank=True, max_length=200)),
                        ('base_url', models.URLField(blank=True, max_length=500)),
                        ('api_key', models.CharField(blank=True, max_length=500)),
                        ('system_prompt', models.TextField(blank=True)),
                        ('max_tokens', models.PositiveIntegerField(blank=True, help_text='Completion tokens per call.', null=True)),
                        ('enabled', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'workers_agentdefinition',
                        'ordering': ['name'],
                        'constraints': [models.CheckConstraint(condition=models.Q(('kind__in', ['http', 'llm'])), name='agentdef_kind_valid'), models.CheckConstraint(condition=models.Q(models.Q(('kind', 'http'), _negated=True), models.Q(('url', ''), _negated=True), _connector='OR'), name='agentdef_http_has_url')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
