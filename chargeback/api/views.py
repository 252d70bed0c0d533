"""Views of the chargeback API: teams, usage, prices, providers, allocation rules and allocations.

Thin: each view validates with a serializer, scopes with ``billing_site.api`` (which uses
``chargeback.selectors``), and calls a service or selector. Another team's object answers 404.
"""

from __future__ import annotations

import datetime as dt

from django.db.models import Q
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.auth import is_api_key
from billing_site.api.idempotency import idempotency_key_of, idempotency_key_parameter, replayable, run_idempotent
from billing_site.api.pagination import NewestFirstCursorPagination, PagePagination
from billing_site.api.scoping import is_finance, scope_by_team, team_for_read, team_for_write, visible_team_ids
from chargeback import selectors
from chargeback.api import serializers as s
from chargeback.api.filters import AllocatedCostFilter, AllocationRuleFilter, UsageRecordFilter
from chargeback.models import AllocatedCost, AllocationRule, UsageRecord
from chargeback.periods import BillingPeriod
from chargeback.services.allocation import allocation_run_create, allocation_run_execute
from chargeback.services.allocation_rules import (
    allocation_rule_create,
    allocation_rule_delete,
    allocation_rule_update,
)
from chargeback.services.usage import usage_record_create, usage_records_record
from teams.models import Team, TeamMembership
from teams.selectors import user_is_member


def _check_user_in_team(user, team: Team, param: str = "user") -> None:
    """A usage record's user must belong to its team (else 400 naming the field)."""
    if user is not None and not user_is_member(user=user, team=team):
        raise ValidationError({param: [f"User {user.pk} is not a member of team {team.pk}."]})


# --- usage ------------------------------------------------------------------------------------


class UsageViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Usage records: record one (key or member), a batch of up to 1,000 (key, finance), list, summarise."""

    key_actions = ("create", "batch")
    member_actions = ("create",)
    money_actions = ("create", "batch")
    serializer_class = s.UsageRecordSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = UsageRecordFilter

    def get_queryset(self):
        return scope_by_team(UsageRecord.objects.all(), self.request)

    def get_serializer_class(self):
        return {"create": s.UsageCreateSerializer, "batch": s.UsageBatchSerializer,
                "summary": s.UsageSummarySerializer}.get(self.action, s.UsageRecordSerializer)

    @extend_schema(
        request=s.UsageCreateSerializer, responses={201: s.UsageRecordSerializer},
        parameters=[idempotency_key_parameter("Required unless the body has idempotency_key.")],
    )
    def create(self, request):
        """Record one usage record, priced from the catalog unless ``cost`` is given.

        The idempotency key (header or body) is the record's key: a replay with the same fields
        answers the recorded row with ``Idempotent-Replayed: true``; other fields, 409.
        """
        serializer = s.UsageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data["idempotency_key"] = idempotency_key_of(request, required=True)
        team = team_for_write(request, data.pop("team", None))
        _check_user_in_team(data.get("user"), team)
        data.setdefault("occurred_at", timezone.now())
        record = usage_record_create(team=team, **data)
        response = Response(s.UsageRecordSerializer(record).data, status=status.HTTP_201_CREATED)
        return replayable(response, record.replayed)

    @extend_schema(
        request=s.UsageBatchSerializer, responses={201: s.UsageBatchResultSerializer},
        parameters=[idempotency_key_parameter("Optional: replays the whole batch's response.")],
    )
    @action(detail=False, methods=["post"])
    def batch(self, request):
        """Record up to 1,000 usage records for one team, all or none (a team key, or finance).

        Every record carries its own ``idempotency_key``: sending a batch again records nothing
        twice (``replayed`` counts those rows). An error names the row: ``records[3].quantity``.
        """
        if not is_api_key(request) and not is_finance(request):
            raise PermissionDenied("Batches are sent by a team API key (or finance).")
        if not isinstance(request.data, dict):
            raise ValidationError({"records": ["Send an object: {\"team\": …, \"records\": […]}."]})
        unknown = sorted(set(request.data) - {"team", "records", "idempotency_key"})
        if unknown:
            raise ValidationError({unknown[0]: ["Unknown field."]})
        # The team through the serializer; the 1,000 records through the fast validator (same rules).
        header = s.UsageBatchSerializer(data={"team": request.data.get("team")}, partial=True)
        header.is_valid(raise_exception=True)
        team = team_for_write(request, header.validated_data.get("team"))
        records = s.batch_records_validate(request.data.get("records"))
        if any("user" in record for record in records):  # the team's members are read only when a record names one
            members = set(TeamMembership.objects.filter(team=team).values_list("user_id", flat=True))
            for index, record in enumerate(records):
                user = record.get("user")
                if user is not None and user.pk not in members:
                    raise ValidationError({"records": {index: {"user": [
                        f"User {user.pk} is not a member of team {team.pk}."]}}})
        now = None
        for record in records:
            if "occurred_at" not in record:
                record["occurred_at"] = now = now or timezone.now()

        def body():
            rows = usage_records_record(team=team, records=records)  # (pk, replayed) per record
            created = sum(1 for _pk, replayed in rows if not replayed)
            return status.HTTP_201_CREATED, {
                "object": "usage_batch", "team": team.pk, "count": len(rows), "created": created,
                "replayed": len(rows) - created, "ids": [pk for pk, _replayed in rows],
            }

        params = {"team": team.pk, "records": request.data.get("records")}
        return run_idempotent(request, operation="usage_batch", params=params, body=body, json_params=True)

    @extend_schema(parameters=[s.UsageSummaryQuerySerializer], responses=s.UsageSummarySerializer)
    @action(detail=False, methods=["get"], pagination_class=None, filterset_class=None)
    def summary(self, request):
        """Total cost and quantity of the usage in ``[period_start, period_end)`` (by ``occurred_at``, UTC),
        by resource type, agent, provider and feature; each figure per currency."""
        query = s.UsageSummaryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        records = self.get_queryset()
        team = data.get("team")
        if team is not None:
            team = team_for_read(request, team)
            records = records.filter(team=team)
        user = data.get("user")
        if user is not None:
            records = records.filter(user=user)
        start = dt.datetime.combine(data["period_start"], dt.time(), dt.timezone.utc)
        end = dt.datetime.combine(data["period_end"], dt.time(), dt.timezone.utc)
        summary = selectors.usage_summary(records=records.filter(occurred_at__gte=start, occurred_at__lt=end))
        body = {"period_start": data["period_start"], "period_end": data["period_end"],
                "team": team.pk if team else None, "user": user.pk if user else None, **summary}
        return Response(s.UsageSummarySerializer(body).data)


# --- prices and providers ---------------------------------------------------------------------


class PriceView(APIView):
    """Resolve a catalog price: the team's override valid at ``at`` (default now), else the global one."""

    @extend_schema(parameters=[s.PriceQuerySerializer], responses=s.PriceSerializer)
    def get(self, request):
        query = s.PriceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        team = data.get("team")
        if team is not None or not is_finance(request):
            ids = visible_team_ids(request)
            if team is None and ids is not None and len(ids) != 1:
                team = None  # several teams and none named: the global price
            else:
                team = team_for_read(request, team)
        price = selectors.price_resolve(
            team=team, category=data["category"], provider=data["provider"], model=data["model"], unit=data["unit"],
            at=data.get("at") or timezone.now(),
        )
        return Response(s.PriceSerializer(price).data)


class ProviderView(APIView):
    """Providers of the price catalog the caller may use (for ``team``, or the caller's only team)."""

    @extend_schema(parameters=[s.ProviderQuerySerializer], responses=s.ProviderListSerializer)
    def get(self, request):
        query = s.ProviderQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        team = query.validated_data.get("team")
        if team is not None:
            team = team_for_read(request, team)
        elif not is_finance(request):
            ids = visible_team_ids(request)
            if ids is not None and len(ids) == 1:
                team = Team.objects.get(pk=next(iter(ids)))
        body = {"team": team.pk if team else None, "results": selectors.provider_list(team=team)}
        return Response(s.ProviderListSerializer(body).data)


# --- allocation rules -------------------------------------------------------------------------


class AllocationRuleViewSet(viewsets.ModelViewSet):
    """Allocation rules: finance changes them; members read the rules that own, take from or give to
    their teams."""

    serializer_class = s.AllocationRuleSerializer
    pagination_class = PagePagination
    filterset_class = AllocationRuleFilter
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self):
        rules = AllocationRule.objects.prefetch_related("targets").order_by("priority", "pk")
        ids = visible_team_ids(self.request)
        if ids is None:
            return rules
        return rules.filter(
            Q(scope_team_id__in=ids) | Q(source_team_id__in=ids) | Q(targets__team_id__in=ids)
        ).distinct()

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = allocation_rule_create(created_by=self.request.user, **data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        targets = data.pop("targets", None)
        serializer.instance = allocation_rule_update(rule=serializer.instance, targets=targets, **data)

    def perform_destroy(self, instance):
        allocation_rule_delete(rule=instance)


# --- allocations ------------------------------------------------------------------------------


class AllocationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Allocated costs (GET, scoped to the caller's teams) and allocation runs (POST, finance)."""

    serializer_class = s.AllocatedCostSerializer
    pagination_class = PagePagination
    filterset_class = AllocatedCostFilter
    money_actions = ("create",)

    def get_queryset(self):
        rows = AllocatedCost.objects.select_related("run").order_by("-run_id", "team_id", "pk")
        if not self.request.query_params.get("run"):
            rows = rows.filter(run__status="committed")
        return scope_by_team(rows, self.request)

    @extend_schema(
        request=s.AllocationRunCreateSerializer,
        responses={201: s.AllocationRunResultSerializer, 200: s.AllocationRunResultSerializer},
        parameters=[idempotency_key_parameter("Optional: a retry with the same key replays the first response.")],
    )
    def create(self, request):
        """Allocate a period (whole months) and commit the run; ``dry_run`` computes and writes nothing (200)."""
        serializer = s.AllocationRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        period = BillingPeriod(data["period_start"], data["period_end"])

        def body():
            if data["dry_run"]:
                run = allocation_run_create(period=period, rule=data.get("rule"), team=data.get("team"),
                                                     dry_run=True, created_by=request.user)
                rows = selectors.allocation_rows(run)
                return status.HTTP_200_OK, s.AllocationRunResultSerializer({"run": run, "allocations": rows}).data
            run = allocation_run_execute(period=period, rule=data.get("rule"), team=data.get("team"),
                                                  created_by=request.user)
            return status.HTTP_201_CREATED, s.AllocationRunResultSerializer({"run": run, "allocations": []}).data

        params = {"period_start": data["period_start"], "period_end": data["period_end"], "rule": data.get("rule"),
                  "team": data.get("team"), "dry_run": data["dry_run"]}
        return run_idempotent(request, operation="allocation_run", params=params, body=body)
