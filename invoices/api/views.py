"""Views of the invoices API: generate, list and read invoices, change their status, download the
PDF, issue credit notes; and the team and user reports.

Thin: the work is ``invoices.services`` (generation, lifecycle, credit notes, the billing run); errors map through
``billing_site.api.exception_handler`` (409 invalid_transition, 422 credit_exceeds_invoice, …).
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db.models import Prefetch
from django.http import FileResponse, HttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.idempotency import idempotency_key_parameter, run_idempotent
from billing_site.api.pagination import PagePagination
from billing_site.api.scoping import scope_by_team, sees_all_teams, team_for_read, visible_team_ids
from billing_site.db import MeteredSum
from billing_site.errors import TeamRequired
from chargeback import selectors as chargeback_selectors
from chargeback.models import AllocatedCost, UsageRecord
from chargeback.periods import BillingPeriod
from invoices.api import serializers as s
from invoices.api.filters import InvoiceFilter
from invoices.errors import InvoiceError, InvoiceGenerationError
from invoices.models import Invoice, InvoiceLine
from invoices.pdf import invoice_render_pdf
from invoices.selectors import invoice_get_with_lines
from invoices.services.billing_run import billing_run_execute
from invoices.services.credit_notes import credit_note_issue
from invoices.services.generation import invoice_generate
from invoices.services.lifecycle import invoice_transition
from invoices.services.pdf_storage import invoice_pdf_filename
from teams.models import Team, TeamMembership
from teams.selectors import team_ids_managed_by, user_is_member

User = get_user_model()
IDEMPOTENCY_HEADER = idempotency_key_parameter("Optional: a retry with the same key replays the first response.")


class InvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Invoices of the caller's teams (a member sees the team's invoices and their own per-user ones)."""

    serializer_class = s.InvoiceSerializer
    pagination_class = PagePagination
    filterset_class = InvoiceFilter
    money_actions = ("create", "status", "credit_notes")

    def get_queryset(self):
        invoices = Invoice.objects.select_related("team").order_by("-period_start", "team_name", "pk")
        if self.action in ("retrieve", "pdf"):
            invoices = invoices.prefetch_related(Prefetch("lines", queryset=InvoiceLine.objects.order_by("position")))
        return scope_by_team(invoices, self.request)

    def get_serializer_class(self):
        return {
            "retrieve": s.InvoiceDetailSerializer, "create": s.InvoiceGenerateSerializer,
            "status": s.InvoiceStatusSerializer, "credit_notes": s.CreditNoteCreateSerializer,
        }.get(self.action, s.InvoiceSerializer)

    @extend_schema(request=s.InvoiceGenerateSerializer,
                   responses={201: s.InvoiceDetailSerializer}, parameters=[IDEMPOTENCY_HEADER])
    def create(self, request):
        """Generate (or refresh) the draft invoice of a team, or one user of it, for a period (finance)."""
        serializer = s.InvoiceGenerateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        user, team = data.get("user"), data.get("team")
        if team is None:
            if user is None:
                # each part is well-formed; the request names no one to bill: 422, as the schema cannot say "one of"
                raise TeamRequired("Give the team (or the user, when they belong to one team).", param="team")
            teams = list(TeamMembership.objects.filter(user=user).values_list("team_id", flat=True)[:2])
            if len(teams) != 1:
                raise TeamRequired(f"User {user.pk} belongs to {len(teams) or 'no'} teams; name the team.", param="team")
            team = Team.objects.get(pk=teams[0])
        if user is not None and not user_is_member(user=user, team=team):
            # both ids are well-formed; they do not go together: 422
            raise InvoiceGenerationError(f"User {user.pk} is not a member of team {team.pk}.", param="user")
        period = BillingPeriod(data["period_start"], data["period_end"])

        def body():
            invoice = invoice_generate(team=team, period=period, user=user, number=data.get("invoice_number"),
                                       kind=data.get("kind"))
            invoice = self.get_queryset().prefetch_related("lines").get(pk=invoice.pk)
            return status.HTTP_201_CREATED, s.InvoiceDetailSerializer(invoice).data

        params = {"team": team, "user": user, "period_start": period.start, "period_end": period.end,
                  "number": data.get("invoice_number"), "kind": data.get("kind")}
        return run_idempotent(request, operation="invoice_generate", params=params, body=body)

    @extend_schema(request=s.InvoiceStatusSerializer, responses={200: s.InvoiceDetailSerializer},
                   parameters=[IDEMPOTENCY_HEADER])
    @action(detail=True, methods=["post", "put"])
    def status(self, request, pk=None):
        """Move the invoice along ``Invoice.TRANSITIONS`` (finance): pending (issue), sent, paid (with a
        payment reference), overdue, cancelled (drafts only; issued invoices take a full credit note)."""
        invoice = self.get_object()
        serializer = s.InvoiceStatusSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if data["status"] == Invoice.Status.PAID and not data["payment_reference"].strip():
            # a blank reference is well-formed (other moves take none); paid needs one: 422
            raise InvoiceError("A payment reference is required to mark an invoice paid.", param="payment_reference",
                               code="payment_reference_required")

        def body():
            changed = invoice_transition(invoice=invoice, to_status=data["status"], by=request.user,
                                         payment_reference=data["payment_reference"])
            fresh = self.get_queryset().prefetch_related("lines").get(pk=changed.pk)
            return status.HTTP_200_OK, s.InvoiceDetailSerializer(fresh).data

        params = {"invoice": invoice.pk, "status": data["status"], "payment_reference": data["payment_reference"]}
        return run_idempotent(request, operation="invoice_status", params=params, body=body)

    @extend_schema(responses={(200, "application/pdf"): OpenApiResponse(response=OpenApiTypes.BINARY,
                                                                        description="The invoice PDF.")})
    @action(detail=True, methods=["get"])
    def pdf(self, request, pk=None):
        """The PDF: the stored one of an issued invoice (its SHA-256 is ``pdf_sha256``), rendered now for a
        draft. ``Content-Disposition`` names the file after the invoice number."""
        invoice = self.get_object()
        filename = f"{invoice.number}.pdf" if invoice.number else invoice_pdf_filename(invoice)
        if invoice.pdf:
            return FileResponse(invoice.pdf.open("rb"), as_attachment=True, filename=filename,
                                content_type="application/pdf")
        response = HttpResponse(invoice_render_pdf(invoice_get_with_lines(pk=invoice.pk)), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @extend_schema(request=s.CreditNoteCreateSerializer, responses={201: s.CreditNoteSerializer},
                   parameters=[IDEMPOTENCY_HEADER])
    @action(detail=True, methods=["post"], url_path="credit-notes")
    def credit_notes(self, request, pk=None):
        """Issue a credit note (finance): neither ``amount`` nor ``lines`` credits everything left and
        cancels the invoice; ``amount`` (tax-inclusive) or ``lines`` (before tax) credit part of it."""
        invoice = self.get_object()
        serializer = s.CreditNoteCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        lines = data.get("lines")
        if lines is not None:
            own = set(invoice.lines.values_list("pk", flat=True))
            for index, line in enumerate(lines):
                if line["invoice_line"] not in own:
                    raise ValidationError({"lines": {index: {"invoice_line": [
                        f"Line {line['invoice_line']} is not a line of invoice {invoice.display_number}."]}}})
            lines = [dict(line) for line in lines]

        def body():
            note = credit_note_issue(invoice=invoice, reason=data["reason"], amount=data.get("amount"),
                                     lines=lines, description=data["description"], issued_by=request.user)
            note = type(note).objects.prefetch_related("lines").select_related("invoice").get(pk=note.pk)
            return status.HTTP_201_CREATED, s.CreditNoteSerializer(note).data

        params = {"invoice": invoice.pk, "reason": data["reason"], "amount": data.get("amount"), "lines": lines,
                  "description": data["description"]}
        return run_idempotent(request, operation="credit_note_issue", params=params, body=body)


# --- billing runs -------------------------------------------------------------------------------


class BillingRunView(APIView):
    """``POST billing-runs/`` (finance): the month-end billing run, the command's and the admin's service."""

    money_actions = ("post",)

    @extend_schema(request=s.BillingRunCreateSerializer,
                   responses={201: s.BillingRunResultSerializer, 200: s.BillingRunResultSerializer})
    def post(self, request):
        """Allocate ``period`` (``YYYY-MM``), write the draft invoices of ``teams`` (all when empty) and
        store their PDFs (``render_pdfs``); ``dry_run`` reports what would be invoiced and writes nothing
        (200). Running a month again supersedes its run and refreshes the drafts, never doubling a cost,
        so a retry is safe without an ``Idempotency-Key``."""
        serializer = s.BillingRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = billing_run_execute(period=data["period"], teams=data.get("teams") or None,
                                     render_pdfs=data["render_pdfs"], dry_run=data["dry_run"],
                                     created_by=request.user)
        code = status.HTTP_200_OK if result.dry_run else status.HTTP_201_CREATED
        return Response(s.BillingRunResultSerializer(result).data, status=code)


# --- reports ------------------------------------------------------------------------------------


def _report(*, records, allocations, invoices, period_start: dt.date, period_end: dt.date, team_id, user_id) -> dict:
    start = dt.datetime.combine(period_start, dt.time(), dt.timezone.utc)
    end = dt.datetime.combine(period_end, dt.time(), dt.timezone.utc)
    usage = chargeback_selectors.usage_summary(records=records.filter(occurred_at__gte=start, occurred_at__lt=end))
    rows = allocations.filter(run__status="committed", run__period_start__gte=period_start,
                              run__period_end__lte=period_end)
    allocated = list(rows.order_by().values("rule_id", "service", "currency").annotate(amount=MeteredSum("amount"))
                     .order_by("rule_id", "service", "currency"))
    invoices = invoices.filter(period_start__gte=period_start, period_end__lte=period_end).order_by("period_start", "pk")
    return {
        "team": team_id, "user": user_id, "period_start": period_start, "period_end": period_end, "usage": usage,
        "allocations": [{"rule": a["rule_id"], "service": a["service"], "currency": a["currency"],
                         "amount": a["amount"]} for a in allocated],
        "invoices": list(invoices),
        "total_cost": [{"currency": t["currency"], "amount": t["cost"]} for t in usage["totals"]],
    }


class TeamReportView(APIView):
    """A team's usage summary, allocated cost, invoices and total cost for ``[period_start, period_end)``."""

    @extend_schema(parameters=[s.ReportQuerySerializer], responses=s.ReportSerializer)
    def get(self, request, pk: int):
        query = s.ReportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        team = Team.objects.filter(pk=pk).first()
        if team is None:
            raise NotFound(f"No team {pk}.")
        team = team_for_read(request, team)
        data = query.validated_data
        body = _report(records=UsageRecord.objects.filter(team=team), allocations=AllocatedCost.objects.filter(team=team),
                       invoices=Invoice.objects.filter(team=team, user__isnull=True),
                       period_start=data["period_start"], period_end=data["period_end"], team_id=team.pk, user_id=None)
        return Response(s.ReportSerializer(body).data)


class UserReportView(APIView):
    """One user's usage, allocated cost, invoices and total cost: for the user, the managers of their
    teams, and finance and auditors. Anybody else gets 404."""

    @extend_schema(parameters=[s.ReportQuerySerializer], responses=s.ReportSerializer)
    def get(self, request, pk: int):
        query = s.ReportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        user = User.objects.filter(pk=pk).first()
        if user is None:
            raise NotFound(f"No user {pk}.")
        if sees_all_teams(request):
            teams = None
        elif user.pk == request.user.pk:
            teams = visible_team_ids(request)
        else:
            teams = team_ids_managed_by(user=request.user) & set(
                TeamMembership.objects.filter(user=user).values_list("team_id", flat=True))
            if not teams:
                raise NotFound(f"No user {pk}.")
        scope = {} if teams is None else {"team_id__in": teams}
        data = query.validated_data
        body = _report(records=UsageRecord.objects.filter(user=user, **scope),
                       allocations=AllocatedCost.objects.filter(user=user, **scope),
                       invoices=Invoice.objects.filter(user=user, **scope),
                       period_start=data["period_start"], period_end=data["period_end"], team_id=None, user_id=user.pk)
        return Response(s.ReportSerializer(body).data)


def urlpatterns(router) -> list:
    """Register the invoice routes on the API's router; return the billing run and report paths."""
    router.register("invoices", InvoiceViewSet, basename="invoice")
    return [
        path("billing-runs/", BillingRunView.as_view(), name="billing-run-create"),
        path("reports/teams/<int:pk>/", TeamReportView.as_view(), name="report-team"),
        path("reports/users/<int:pk>/", UserReportView.as_view(), name="report-user"),
    ]
