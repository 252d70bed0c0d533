"""The ``finance`` and ``auditor`` groups and their permissions.

``finance`` gets every permission of the billing apps (``teams``, ``chargeback``, ``wallets``,
``invoices``, the shared ``billing_site`` models and the ``jobs`` page): add, change, delete and view of each model
plus the custom ones (``wallets.top_up``, ``wallets.grant``, ``wallets.freeze``,
``invoices.issue``…), and may read the audit log and users (for the members' autocomplete).
``auditor`` gets the ``view_*`` permissions only. Group names come from ``teams.selectors``
(``FINANCE_GROUP``, ``AUDITOR_GROUP``), which also decides that staff outside these groups see
nothing of billing.

Migrations do not import this module: each keeps a frozen copy of the groups as they were at its
time (``wallets/migrations/_billing_groups.py``). Call :func:`billing_groups_sync` to bring the
groups of a database up to this definition; it only ever adds, so it is safe to run any number of
times.
"""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

from teams.selectors import AUDITOR_GROUP, FINANCE_GROUP

BILLING_APPS = ("teams", "chargeback", "wallets", "invoices", "billing_site", "subscriptions", "payments", "jobs",
                "webhooks")
#: Permissions outside the billing apps, as (app label, codename): finance reads users for the team
#: members' autocomplete; both groups read the audit trail.
FINANCE_EXTRA = (("auth", "view_user"), ("auditlog", "view_logentry"),
                 # Procrastinate's own admin of the jobs (arguments, events), beside the Jobs page.
                 ("procrastinate", "view_procrastinatejob"), ("procrastinate", "view_procrastinateevent"))
AUDITOR_EXTRA = (("auditlog", "view_logentry"),)


def billing_groups_sync(apps=global_apps, schema_editor=None) -> None:
    """Create the two groups if missing and grant them the billing permissions that exist now.

    Works with the live registry (and, with the same signature as ``RunPython``, with a
    migration's historical ``apps``). ``create_permissions`` runs first for the billing apps (and
    auth, auditlog), because Django creates permissions only after ``migrate`` finishes. Never
    removes a permission someone granted by hand.
    """
    using = schema_editor.connection.alias if schema_editor is not None else "default"
    for label in (*BILLING_APPS, "auth", "auditlog", "procrastinate"):
        try:
            app_config = global_apps.get_app_config(label)
        except LookupError:
            continue
        create_permissions(app_config, verbosity=0, using=using, apps=apps)

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.using(using)
    billing = permissions.filter(content_type__app_label__in=BILLING_APPS)

    def extra(pairs):
        found = permissions.none()
        for app_label, codename in pairs:
            found = found | permissions.filter(content_type__app_label=app_label, codename=codename)
        return found

    finance, _ = Group.objects.using(using).get_or_create(name=FINANCE_GROUP)
    finance.permissions.add(*billing, *extra(FINANCE_EXTRA))
    auditor, _ = Group.objects.using(using).get_or_create(name=AUDITOR_GROUP)
    auditor.permissions.add(*billing.filter(codename__startswith="view_"), *extra(AUDITOR_EXTRA))
