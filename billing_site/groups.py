"""The ``finance`` and ``auditor`` groups and their permissions, kept in step by data migrations.

``finance`` gets every permission of the billing apps (``chargeback``, ``wallets``, ``invoices``):
add, change, delete and view of each model plus the custom ones (``wallets.top_up``,
``wallets.grant``, ``wallets.freeze``, ``invoices.issue``…), and may read the audit log and users
(for the members' autocomplete). ``auditor`` gets the ``view_*`` permissions only. Group names come
from ``chargeback.selectors`` (``FINANCE_GROUP``, ``AUDITOR_GROUP``), which also decides that
staff outside these groups see nothing of billing.

A migration that adds a model or a permission later calls :func:`billing_groups_sync` again in a
``RunPython`` (after its own operations): the function creates the missing permissions first and
only ever adds to the groups, so it is safe to run any number of times.
"""

from __future__ import annotations

from django.apps import apps as global_apps

BILLING_APPS = ("chargeback", "wallets", "invoices")
#: Permissions outside the billing apps, as (app label, codename): finance reads users for the team
#: members' autocomplete; both groups read the audit trail.
FINANCE_EXTRA = (("auth", "view_user"), ("auditlog", "view_logentry"))
AUDITOR_EXTRA = (("auditlog", "view_logentry"),)


def billing_groups_sync(apps=global_apps, schema_editor=None) -> None:
    """Create the two groups if missing and grant them the billing permissions that exist now.

    Works with the historical ``apps`` of a migration (``RunPython(billing_groups_sync)``) and with
    the live registry. ``create_permissions`` runs first for the billing apps (and auth, auditlog),
    because Django creates permissions only after ``migrate`` finishes, too late for a data
    migration in the same run. Never removes a permission someone granted by hand.
    """
    from django.contrib.auth.management import create_permissions

    using = schema_editor.connection.alias if schema_editor is not None else "default"
    labels = (*BILLING_APPS, "auth", "auditlog")
    for label in labels:
        try:
            app_config = global_apps.get_app_config(label)
        except LookupError:
            continue
        # The live app config has models_module set; create_permissions then reads the models'
        # state (Meta.permissions) from the historical `apps`.
        create_permissions(app_config, verbosity=0, using=using, apps=apps)

    from chargeback.selectors import AUDITOR_GROUP, FINANCE_GROUP

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    billing = Permission.objects.using(using).filter(content_type__app_label__in=BILLING_APPS)

    def extra(pairs):
        found = Permission.objects.none()
        for app_label, codename in pairs:
            found = found | Permission.objects.using(using).filter(
                content_type__app_label=app_label, codename=codename
            )
        return found

    finance, _ = Group.objects.using(using).get_or_create(name=FINANCE_GROUP)
    finance.permissions.add(*billing, *extra(FINANCE_EXTRA))
    auditor, _ = Group.objects.using(using).get_or_create(name=AUDITOR_GROUP)
    auditor.permissions.add(*billing.filter(codename__startswith="view_"), *extra(AUDITOR_EXTRA))
