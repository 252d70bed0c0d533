"""Views of the teams API: the teams a caller may see, their members and their billing settings.

Thin: scoped with ``billing_site.api.scoping`` (``teams.selectors`` underneath); another team's
object answers 404.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from billing_site.api.pagination import PagePagination
from billing_site.api.scoping import scope_by_team
from teams.api import serializers as s
from teams.models import Team, TeamMembership
from teams.selectors import billing_settings_get
from teams.services import billing_settings_update


class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    """Teams the caller may see (finance and auditors: all; members: their own)."""

    serializer_class = s.TeamSerializer
    pagination_class = PagePagination

    def get_queryset(self):
        return scope_by_team(Team.objects.all(), self.request, field="pk").order_by("name", "pk")

    @extend_schema(responses=s.TeamMemberSerializer(many=True))
    @action(detail=True, methods=["get"])
    def members(self, request, pk=None):
        team = self.get_object()
        memberships = TeamMembership.objects.filter(team=team).select_related("user").order_by("user__username", "pk")
        page = self.paginate_queryset(memberships)
        return self.get_paginated_response(s.TeamMemberSerializer(page, many=True).data)

    def get_serializer_class(self):
        if self.action == "billing_settings":
            return s.BillingSettingsSerializer
        return super().get_serializer_class()

    @action(detail=True, methods=["get", "put"], url_path="billing-settings", pagination_class=None)
    def billing_settings(self, request, pk=None):
        """The team's billing settings (read: its members; change: finance). PUT changes the fields sent."""
        team = self.get_object()
        if request.method == "PUT":
            serializer = s.BillingSettingsSerializer(data=request.data, partial=True)
            serializer.is_valid(raise_exception=True)
            billing = billing_settings_update(team=team, **serializer.validated_data)
        else:
            billing = billing_settings_get(team=team)
        return Response(s.BillingSettingsSerializer(billing).data)
