"""Views of the payments API: the caller's cards and top-ups by card; finance's recent charges and refunds.

Thin: writes are ``payments.services``, errors map through ``billing_site.api.errors.exception_handler``
(409 ``payments_not_configured`` without Stripe, 402 ``payment_failed`` for a declined card, 404 for
another team's card, 400 naming the field).

Who may call what:

* ``billing/payment-methods/…``, ``billing/top-ups/``: every person for their teams (``?team=`` or
  ``team`` in the body when they belong to several; another team's id is 404); finance for any team.
* ``admin/billing/recent-charges/``, ``admin/billing/invoices/{id}/refund/``: finance (auditors read);
  anybody else gets 403.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_site.api.idempotency import idempotency_key_of, idempotency_key_parameter
from billing_site.api.scoping import team_for_read, team_for_write
from billing_site.money import to_minor_units
from invoices.models import Invoice
from subscriptions.api.views import FinanceAccess

from ..selectors import recent_charges
from ..services.payment_methods import (
    payment_method_detach,
    payment_method_list,
    payment_method_set_default,
    setup_intent_complete,
    setup_intent_create,
)
from ..services.refunds import invoice_refund
from ..services.top_ups import wallet_top_up_by_card
from ..stripe_client import payments_require
from . import serializers as s

NOT_CONFIGURED = OpenApiResponse(description="payments_not_configured: Stripe is not configured (the error shape).")
DECLINED = OpenApiResponse(description="payment_failed: Stripe refused the card (the error shape).")


class TeamCallerView(APIView):
    """A view of the caller's own team's payments: members (reads and writes) and finance."""

    member_actions = ("post", "delete")

    def read_team(self):
        query = s.TeamQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return team_for_read(self.request, query.validated_data.get("team"))

    def write_team(self, serializer_class=s.TeamBodySerializer):
        body = serializer_class(data=self.request.data)
        body.is_valid(raise_exception=True)
        team = team_for_write(self.request, body.validated_data.get("team"))
        return team, body.validated_data


class PaymentMethodListView(TeamCallerView):
    @extend_schema(parameters=[s.TeamQuerySerializer],
                   responses={200: s.PaymentMethodListSerializer, 409: NOT_CONFIGURED})
    def get(self, request):
        """The team's cards, newest first: ``payment_methods`` (``id, type, brand, last4, exp_month,
        exp_year, created`` (Unix seconds), ``is_default``) and ``default_payment_method``."""
        payments_require()
        return Response(s.PaymentMethodListSerializer(payment_method_list(team=self.read_team())).data)

    @extend_schema(request=s.SetupIntentCompleteSerializer,
                   responses={200: s.PaymentMethodSerializer, 402: DECLINED, 409: NOT_CONFIGURED})
    def post(self, request):
        """Finish adding a card: ``setup_intent`` (confirmed by the front end) attaches its card; it
        becomes the default when the team has none. Idempotent."""
        payments_require()
        team, data = self.write_team(s.SetupIntentCompleteSerializer)
        card = setup_intent_complete(team=team, setup_intent_id=data["setup_intent"])
        return Response(s.PaymentMethodSerializer(card).data)


class SetupIntentView(TeamCallerView):
    @extend_schema(request=s.TeamBodySerializer, responses={201: s.SetupIntentSerializer, 409: NOT_CONFIGURED})
    def post(self, request):
        """Start adding a card: a SetupIntent (off-session use) of the team's Stripe customer (created on
        first need); its ``client_secret`` is for Stripe.js in the front end."""
        payments_require()
        team, _ = self.write_team()
        return Response(s.SetupIntentSerializer(setup_intent_create(team=team)).data, status=status.HTTP_201_CREATED)


class PaymentMethodDefaultView(TeamCallerView):
    @extend_schema(request=s.TeamBodySerializer, responses={200: s.PaymentMethodSerializer, 409: NOT_CONFIGURED})
    def post(self, request, payment_method):
        """Make the card the team's default (what automatic collection and top-ups charge)."""
        payments_require()
        team, _ = self.write_team()
        return Response(s.PaymentMethodSerializer(
            payment_method_set_default(team=team, payment_method_id=payment_method)).data)


class PaymentMethodView(TeamCallerView):
    @extend_schema(parameters=[s.TeamQuerySerializer], responses={204: None, 409: NOT_CONFIGURED})
    def delete(self, request, payment_method):
        """Detach the card from the team; when it was the default, the team has no default any more."""
        payments_require()
        query = s.TeamQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        team = team_for_write(request, query.validated_data.get("team"))
        payment_method_detach(team=team, payment_method_id=payment_method)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TopUpView(TeamCallerView):
    member_actions = ("post",)

    @extend_schema(
        request=s.TopUpRequestSerializer,
        parameters=[idempotency_key_parameter("Required (or idempotency_key in the body): a retry with the same key "
                                              "returns the same payment, never a second charge.")],
        responses={201: s.PaymentSerializer, 402: DECLINED, 409: NOT_CONFIGURED},
    )
    def post(self, request):
        """Top up a wallet by card: the team's card is charged off-session; the wallet is credited only
        once the payment succeeded (``status`` ``succeeded``, ``ledger_entry`` set), exactly once."""
        payments_require()
        body = s.TopUpRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = idempotency_key_of(request, required=True)
        wallet = body.validated_data["wallet"]
        team_for_write(request, wallet.team, param="wallet")
        payment = wallet_top_up_by_card(wallet=wallet, amount=body.validated_data["amount"], idempotency_key=key,
                                        payment_method_id=body.validated_data.get("payment_method", ""),
                                        created_by=request.user if request.user.is_authenticated else None)
        return Response(s.PaymentSerializer(payment).data, status=status.HTTP_201_CREATED)


class RecentChargesView(APIView):
    permission_classes = [FinanceAccess]

    @extend_schema(parameters=[s.RecentChargesQuerySerializer],
                   responses={200: s.RecentChargesSerializer, 409: NOT_CONFIGURED})
    def get(self, request):
        """The latest charges at Stripe, newest first (``?limit=``, 1 to 100, default 20): ``id, amount``
        (Stripe's integer minor units), ``currency, status, customer, description, created`` (Unix
        seconds), ``paid, refunded``; ``total`` counts them."""
        payments_require()
        query = s.RecentChargesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        charges = recent_charges(limit=query.validated_data["limit"])
        return Response(s.RecentChargesSerializer({"charges": charges, "total": len(charges)}).data)


class InvoiceRefundView(APIView):
    permission_classes = [FinanceAccess]

    @extend_schema(request=s.RefundRequestSerializer, responses={201: s.RefundSerializer, 409: NOT_CONFIGURED})
    def post(self, request, pk):
        """Refund a paid invoice through Stripe: a credit note of ``amount`` (default: everything not yet
        credited), refunded on the invoice's Stripe payment; the credit note records the refund id."""
        payments_require()
        body = s.RefundRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        invoice = get_object_or_404(Invoice, pk=pk)
        note = invoice_refund(invoice=invoice, reason=body.validated_data["reason"],
                              amount=body.validated_data.get("amount"),
                              description=body.validated_data.get("description", ""), issued_by=request.user)
        return Response(s.RefundSerializer({"credit_note": note.pk, "number": note.number, "total": str(to_minor_units(note.total, note.currency)),
                                            "currency": note.currency, "refund_reference": note.refund_reference}).data,
                        status=status.HTTP_201_CREATED)


#: A Stripe payment method id in a URL.
PM = "<str:payment_method>"


def urlpatterns() -> list:
    """The payment routes of ``/api/v1/``."""
    return [
        path("billing/payment-methods/", PaymentMethodListView.as_view(), name="billing-payment-methods"),
        path("billing/payment-methods/setup-intents/", SetupIntentView.as_view(), name="billing-setup-intents"),
        path(f"billing/payment-methods/{PM}/default/", PaymentMethodDefaultView.as_view(),
             name="billing-payment-method-default"),
        path(f"billing/payment-methods/{PM}/", PaymentMethodView.as_view(), name="billing-payment-method"),
        path("billing/top-ups/", TopUpView.as_view(), name="billing-top-ups"),
        path("admin/billing/recent-charges/", RecentChargesView.as_view(), name="admin-billing-recent-charges"),
        path("admin/billing/invoices/<int:pk>/refund/", InvoiceRefundView.as_view(), name="admin-billing-invoice-refund"),
    ]
