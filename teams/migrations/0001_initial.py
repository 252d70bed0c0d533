"""The team models join the teams app, in the migration state only: their tables and rows stay.

``Team``, ``TeamMembership`` and ``ApiKey`` were chargeback's models and ``BillingSettings``
wallets'. Here the teams app takes them over in the state, still on their old tables (``db_table``),
so no row moves and nothing is written; the old apps then point their foreign keys here and drop
the models from their state (chargeback 0007 and 0008, wallets 0008, invoices 0005), and
``0002_tables_and_content_types`` renames the tables to ``teams_*``.
"""

import billing_site.fields
import django.core.validators
import django.db.models.deletion
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("chargeback", "0006_usage_user_index_only_where_a_user_is_set"),
        ("wallets", "0007_ledger_entry_wallet_index_covered_by_newest"),
        ("invoices", "0004_issued_invoices_immutable_on_postgresql"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Team',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=200)),
                        ('slug', models.SlugField(max_length=100, unique=True)),
                        ('cost_center', models.CharField(blank=True, help_text='Cost-center code in the general ledger.', max_length=50)),
                        ('currency', models.CharField(default=billing_site.fields.default_currency, help_text="ISO 4217 code of the team's invoices.", max_length=3)),
                        ('is_active', models.BooleanField(default=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('parent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='children', to='teams.team')),
                    ],
                    options={
                        'db_table': 'chargeback_team',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='BillingSettings',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('billing_model', models.CharField(choices=[('prepaid_team', 'Prepaid (team wallet)'), ('prepaid_user', 'Prepaid (a wallet per user)'), ('postpaid', 'Postpaid (credit limit, invoiced)'), ('unlimited', 'Unlimited (recorded only)')], default='prepaid_team', max_length=20)),
                        ('credit_limit', models.DecimalField(decimal_places=12, default=Decimal('0'), help_text="Postpaid only: how far below zero the team wallet may go, in the team's currency.", max_digits=30, validators=[django.core.validators.MinValueValidator(0)])),
                        ('warning_threshold_type', models.CharField(choices=[('percent_of_last_top_up', 'Percent of the last top-up'), ('absolute', 'Absolute amount')], default='percent_of_last_top_up', max_length=30)),
                        ('warning_threshold_value', models.DecimalField(decimal_places=12, default=Decimal('10'), help_text="Percent (0–100) of the last top-up, or an amount in the wallet's currency.", max_digits=30, validators=[django.core.validators.MinValueValidator(0)])),
                        ('block_on_zero_balance', models.BooleanField(default=True, help_text='Prepaid: refuse charges that available credit does not cover.')),
                        ('notify_on_warning', models.BooleanField(default=True)),
                        ('notify_emails', models.TextField(blank=True, help_text='Comma-separated e-mail addresses.', validators=[billing_site.fields.validate_email_list])),
                        ('billing_address', models.TextField(blank=True)),
                        ('allowed_providers', models.JSONField(blank=True, default=list, help_text='Provider names; empty allows all.')),
                        ('tax_rate', models.DecimalField(decimal_places=4, default=Decimal('0'), help_text='Percent applied to invoice subtotals.', max_digits=7)),
                        ('payment_terms_days', models.PositiveIntegerField(default=billing_site.fields.default_payment_terms_days)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('team', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='billing_settings', to='teams.team')),
                    ],
                    options={
                        'db_table': 'wallets_billingsettings',
                        'verbose_name_plural': 'billing settings',
                    },
                ),
                migrations.CreateModel(
                    name='ApiKey',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(help_text="What uses the key, e.g. 'voice agent (production)'.", max_length=100)),
                        ('prefix', models.CharField(editable=False, max_length=16, unique=True)),
                        ('key_hash', models.CharField(editable=False, help_text='SHA-256 (hex) of the key.', max_length=64, unique=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('last_used_at', models.DateTimeField(blank=True, editable=False, null=True)),
                        ('revoked_at', models.DateTimeField(blank=True, editable=False, null=True)),
                        ('created_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('team', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='api_keys', to='teams.team')),
                    ],
                    options={
                        'db_table': 'chargeback_apikey',
                        'verbose_name': 'API key',
                        'ordering': ['team', '-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='TeamMembership',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('role', models.CharField(choices=[('member', 'Member'), ('manager', 'Manager')], default='member', max_length=10)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='teams.team')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='team_memberships', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'chargeback_teammembership',
                        'ordering': ['team', 'user'],
                    },
                ),
                migrations.AddConstraint(
                    model_name='team',
                    constraint=models.CheckConstraint(condition=models.Q(('currency__regex', '^[A-Z]{3}$')), name='team_currency_iso4217'),
                ),
                migrations.AddConstraint(
                    model_name='billingsettings',
                    constraint=models.CheckConstraint(condition=models.Q(('billing_model__in', ['prepaid_team', 'prepaid_user', 'postpaid', 'unlimited'])), name='billing_settings_model_valid'),
                ),
                migrations.AddConstraint(
                    model_name='billingsettings',
                    constraint=models.CheckConstraint(condition=models.Q(('warning_threshold_type__in', ['percent_of_last_top_up', 'absolute'])), name='billing_settings_threshold_type_valid'),
                ),
                migrations.AddConstraint(
                    model_name='billingsettings',
                    constraint=models.CheckConstraint(condition=models.Q(('credit_limit__gte', 0)), name='billing_settings_credit_limit_not_negative'),
                ),
                migrations.AddConstraint(
                    model_name='billingsettings',
                    constraint=models.CheckConstraint(condition=models.Q(('warning_threshold_value__gte', 0), models.Q(('warning_threshold_type', 'absolute'), ('warning_threshold_value__lte', 100), _connector='OR')), name='billing_settings_threshold_in_range'),
                ),
                migrations.AddConstraint(
                    model_name='billingsettings',
                    constraint=models.CheckConstraint(condition=models.Q(('tax_rate__gte', 0), ('tax_rate__lte', 100)), name='billing_settings_tax_rate_in_range'),
                ),
                migrations.AddConstraint(
                    model_name='teammembership',
                    constraint=models.UniqueConstraint(fields=('user', 'team'), name='membership_unique_user_team'),
                ),
                migrations.AddConstraint(
                    model_name='teammembership',
                    constraint=models.CheckConstraint(condition=models.Q(('role__in', ['member', 'manager'])), name='membership_role_valid'),
                ),
            ],
            database_operations=[],
        ),
    ]
