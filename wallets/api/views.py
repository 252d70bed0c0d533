"""Views of the wallets API: wallets and their ledger, top-ups, quotes, charges and statistics.

Money moves only through ``wallets.services``; their idempotency keys are the API's
``Idempotency-Key``: a replay answers the first result with ``Idempotent-Replayed: true``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.auth import is_api_key
from billing_site.api.idempotency import idempotency_key_of, idempotency_key_parameter, replayable
from billing_site.api.pagination import NewestFirstCursorPagination, PagePagination
from billing_site.api.scoping import team_for_read, team_for_write
from teams.selectors import team_currency_check, user_is_member
from wallets import selectors
from wallets.api import serializers as s
from wallets.api.filters import LedgerEntryFilter, WalletFilter
from wallets.models import LedgerEntry, Wallet
from wallets.services import posting, usage_events
from wallets.services.wallets import wallet_open

IDEMPOTENCY_HEADER = idempotency_key_parameter(
    "Required unless the body has idempotency_key: a retry with it never moves money twice.")


class WalletViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Wallets the caller may see: finance and auditors all; a member their teams' wallets and their own;
    a manager also the wallets of the team's members. Filters: ``team``, ``user``, ``status``, ``currency``."""

    serializer_class = s.WalletSerializer
    pagination_class = PagePagination
    filterset_class = WalletFilter
    money_actions = ("top_up",)

    @extend_schema(request=s.WalletOpenSerializer, responses={201: s.WalletSerializer, 200: s.WalletSerializer})
    def create(self, request):
        """Open a wallet (finance) before any top-up or charge: 201 with the new wallet, or 200 with the
        live one when it is already open (``wallets.services.wallets.wallet_open``). A currency the team
        is not billed in is 422 ``currency_not_allowed``; a user outside the team 400 naming ``user``."""
        serializer = s.WalletOpenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        team, user = data["team"], data.get("user")
        currency = team_currency_check(team=team, currency=data.get("currency", team.currency).upper())
        existing = selectors.wallet_get(team=team, user=user, currency=currency)
        wallet = existing or wallet_open(team=team, user=user, currency=currency)
        return Response(s.WalletSerializer(wallet).data,
                        status=status.HTTP_200_OK if existing else status.HTTP_201_CREATED)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no caller
            return Wallet.objects.none()
        return selectors.wallet_list_for_user(user=self.request.user)

    def get_serializer_class(self):
        return {"top_up": s.TopUpSerializer, "transactions": s.LedgerEntrySerializer}.get(self.action, s.WalletSerializer)

    @extend_schema(request=s.TopUpSerializer, responses={201: s.LedgerEntrySerializer}, parameters=[IDEMPOTENCY_HEADER])
    @action(detail=True, methods=["post"], url_path="top-up")
    def top_up(self, request, pk=None):
        """Credit purchased credit to the wallet (finance): a ``top_up`` ledger entry of ``amount``."""
        wallet = self.get_object()
        serializer = s.TopUpSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        entry = posting.wallet_top_up(
            wallet=wallet, amount=data["amount"], idempotency_key=idempotency_key_of(request, required=True),
            description=data["description"], reference_id=data["reference_id"], created_by=request.user,
        )
        return replayable(Response(s.LedgerEntrySerializer(entry).data, status=status.HTTP_201_CREATED), entry.replayed)

    @extend_schema(responses=s.LedgerEntrySerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=NewestFirstCursorPagination)
    def transactions(self, request, pk=None):
        """The wallet's ledger entries, newest first (cursor pagination)."""
        wallet = self.get_object()
        page = self.paginate_queryset(selectors.ledger_entry_list(wallet=wallet))
        return self.get_paginated_response(s.LedgerEntrySerializer(page, many=True).data)


class LedgerEntryViewSet(viewsets.ReadOnlyModelViewSet):
    """Every ledger entry of the wallets the caller may see (``wallets.selectors.wallet_list_for_user``),
    newest first: ``?team=`` gives one team's entries across its wallets. Filters: ``team``, ``wallet``,
    ``entry_type``, ``from`` (inclusive), ``to`` (exclusive) on ``created_at``."""

    serializer_class = s.LedgerEntrySerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = LedgerEntryFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return LedgerEntry.objects.none()
        return selectors.ledger_entry_list_for_user(user=self.request.user)


class QuoteView(APIView):
    """Price a list of items from the catalog (the team's overrides first); nothing is written."""

    key_actions = ("post",)
    member_actions = ("post",)

    @extend_schema(request=s.QuoteRequestSerializer, responses=s.QuoteSerializer)
    def post(self, request):
        serializer = s.QuoteRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        team = data.get("team")
        team = team_for_write(request, team) if is_api_key(request) else team_for_read(request, team)
        quote = usage_events.quote(team=team, items=[dict(i) for i in data["items"]], at=data.get("at"))
        body = {"team": team.pk, "items": [vars(i) for i in quote.items], "total": quote.total, "currency": quote.currency}
        return Response(s.QuoteSerializer(body).data)


class ChargeView(APIView):
    """Charge a usage event: price its items and debit the right wallet with one ledger entry.

    402 ``insufficient_funds`` and 409 ``wallet_frozen`` keep the attempt as a rejected event (a
    replay answers the same error). The idempotency key (header or body) is required.
    """

    key_actions = ("post",)
    member_actions = ("post",)
    money_actions = ("post",)

    @extend_schema(request=s.ChargeRequestSerializer, responses={201: s.UsageEventSerializer},
                   parameters=[IDEMPOTENCY_HEADER])
    def post(self, request):
        serializer = s.ChargeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key = idempotency_key_of(request, required=True)
        team = team_for_write(request, data.get("team"))
        user = data.get("user")
        if user is None and not is_api_key(request) and user_is_member(user=request.user, team=team):
            user = request.user
        if user is not None and not user_is_member(user=user, team=team):
            raise ValidationError({"user": [f"User {user.pk} is not a member of team {team.pk}."]})
        event = usage_events.usage_event_charge(
            team=team, user=user, feature_key=data["feature_key"], external_reference_id=data["external_reference_id"],
            idempotency_key=key, items=[dict(i) for i in data["items"]], metadata=data["metadata"],
        )
        response = Response(s.UsageEventSerializer(event).data, status=status.HTTP_201_CREATED)
        return replayable(response, event.replayed)


class StatisticsView(APIView):
    """Charged usage of a team by year (``year`` alone, or all time)."""

    granularity = "year"
    query_serializer = s.StatisticsQuerySerializer

    @extend_schema(parameters=[s.StatisticsQuerySerializer], responses=s.StatisticsSerializer)
    def get(self, request):
        query = self.query_serializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        team = team_for_read(request, data.get("team"))
        stats = selectors.usage_statistics(team=team, granularity=self.granularity, year=data.get("year"),
                                           month=data.get("month"), user=data.get("user"))
        return Response(s.StatisticsSerializer({"team": team.pk, "currency": team.currency, **stats}).data)


class MonthStatisticsView(StatisticsView):
    """Charged usage of a team by month: the months of ``year``."""

    granularity = "month"
    query_serializer = s.MonthStatisticsQuerySerializer

    @extend_schema(parameters=[s.MonthStatisticsQuerySerializer], responses=s.StatisticsSerializer)
    def get(self, request):
        return super().get(request)


class DayStatisticsView(StatisticsView):
    """Charged usage of a team by day: the days of ``year``-``month``."""

    granularity = "day"
    query_serializer = s.DayStatisticsQuerySerializer

    @extend_schema(parameters=[s.DayStatisticsQuerySerializer], responses=s.StatisticsSerializer)
    def get(self, request):
        return super().get(request)
