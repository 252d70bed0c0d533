"""Admin building blocks shared by the billing apps."""


class ReadOnlyAdminMixin:
    """No add, change or delete for anyone, and no bulk delete action: rows are written by services.

    For immutable records (ledger entries, usage, allocation runs): the admin shows them, it never
    edits them (HOUSE_STYLE, "Admin").
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions
