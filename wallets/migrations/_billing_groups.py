"""The ``finance`` and ``auditor`` groups as the migrations of this era made them.

A frozen copy for the migrations that created the groups and granted them the permissions of
later models (wallets 0004 and 0005, chargeback 0005): a migration imports no live application
code, so this module imports only Django. The live definition is ``teams.groups``.

``finance`` gets every permission of the billing apps of the time (``chargeback``, ``wallets``,
``invoices``) plus reading users and the audit log; ``auditor`` their ``view_*`` permissions and
the audit log. Only ever adds to the groups, so it is safe to run any number of times.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions

FINANCE_GROUP = "finance"
AUDITOR_GROUP = "auditor"
BILLING_APPS = ("chargeback", "wallets", "invoices")
FINANCE_EXTRA = (("auth", "view_user"), ("auditlog", "view_logentry"))
AUDITOR_EXTRA = (("auditlog", "view_logentry"),)


def billing_groups_sync(apps, schema_editor) -> None:
    """``RunPython`` forward: create the two groups if missing and grant the permissions that exist now.

    ``create_permissions`` runs first for the billing apps (and auth, auditlog), because Django
    creates permissions only after ``migrate`` finishes, too late for a data migration in the same
    run. Never removes a permission someone granted by hand.
    """
    using = schema_editor.connection.alias
    for label in (*BILLING_APPS, "auth", "auditlog"):
        try:
            app_config = global_apps.get_app_config(label)
        except LookupError:
            continue
        # The live app config has models_module set; create_permissions then reads the models'
        # state (Meta.permissions) from the historical `apps`.
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
