"""Columns of the teams admin's CSV/XLSX export (``billing_site.exports.ExportResource``)."""

from __future__ import annotations

from import_export.fields import Field

from billing_site.exports import ExportResource

from .models import Team


class TeamResource(ExportResource):
    parent = Field(attribute="parent__slug", column_name="parent")

    class Meta:
        model = Team
        fields = ("id", "name", "slug", "cost_center", "parent", "currency", "is_active", "created_at")
        export_order = fields

    def filter_export(self, queryset, **kwargs):
        return queryset.select_related("parent")
