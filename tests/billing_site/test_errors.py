"""Every ``BillingError`` reaches the API as its own status and code; ``money.parse_amount`` checks amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_site.api.errors import exception_handler
from billing_site.errors import (
    BillingError,
    IdempotencyError,
    IdempotencyKeyRequired,
    InvalidRequest,
    PeriodOrder,
    TeamRequired,
)
from billing_site.money import AmountOutOfRange, MoneyError, parse_amount
from chargeback import errors as chargeback_errors
from chargeback.focus.results import FocusImportError
from chargeback.periods import PeriodError
from invoices import errors as invoice_errors
from payments import errors as payment_errors
from subscriptions import errors as subscription_errors
from teams import errors as team_errors
from wallets import errors as wallet_errors
from webhooks import errors as webhook_errors

D = Decimal

#: The documented table (billing_site/errors.py, docs/api.md "Errors"): class → (HTTP status, code).
DOCUMENTED = {
    InvalidRequest: (400, "invalid_request"),
    IdempotencyError: (409, "idempotency_error"),
    IdempotencyKeyRequired: (422, "idempotency_key_required"),
    PeriodOrder: (422, "period_order"),
    TeamRequired: (422, "team_required"),
    MoneyError: (400, "invalid_amount"),
    AmountOutOfRange: (422, "amount_out_of_range"),
    team_errors.TeamsError: (400, "teams_error"),
    team_errors.InvalidTeamRequest: (400, "invalid_request"),
    team_errors.InvalidApiKeyRequest: (400, "invalid_request"),
    team_errors.CurrencyNotAllowed: (422, "currency_not_allowed"),
    chargeback_errors.ChargebackError: (400, "chargeback_error"),
    chargeback_errors.PriceNotFound: (422, "price_not_found"),
    chargeback_errors.InvalidUsage: (400, "invalid_usage"),
    chargeback_errors.UsageRecordVoid: (409, "usage_record_void"),
    chargeback_errors.AllocationError: (422, "allocation_error"),
    chargeback_errors.NothingToAllocate: (422, "nothing_to_allocate"),
    chargeback_errors.RuleConfigurationError: (422, "rule_configuration_error"),
    chargeback_errors.StaleAllocationRun: (409, "stale_allocation_run"),
    chargeback_errors.TeamMappingError: (400, "invalid_team_mapping"),
    PeriodError: (400, "invalid_period"),
    FocusImportError: (400, "invalid_focus_file"),
    wallet_errors.WalletError: (400, "wallet_error"),
    wallet_errors.InvalidAmount: (400, "invalid_amount"),
    wallet_errors.InsufficientFunds: (402, "insufficient_funds"),
    wallet_errors.ProviderNotAllowed: (403, "provider_not_allowed"),
    wallet_errors.WalletFrozen: (409, "wallet_frozen"),
    wallet_errors.HoldNotOpen: (409, "hold_not_open"),
    invoice_errors.InvoiceError: (422, "invoice_error"),
    invoice_errors.InvalidTransition: (409, "invalid_transition"),
    invoice_errors.InvoiceImmutable: (409, "invoice_immutable"),
    invoice_errors.InvoicePdfError: (409, "invoice_immutable"),
    invoice_errors.DuplicateInvoiceNumber: (409, "duplicate_invoice_number"),
    invoice_errors.CreditNoteLimitExceeded: (422, "credit_exceeds_invoice"),
    invoice_errors.InvoiceGenerationError: (422, "invoice_generation_error"),
    invoice_errors.InvalidInvoiceRequest: (400, "invalid_request"),
    # subscriptions
    subscription_errors.SubscriptionError: (422, "subscription_error"),
    subscription_errors.InvalidSubscriptionRequest: (400, "invalid_request"),
    subscription_errors.PlanImmutable: (409, "plan_immutable"),
    subscription_errors.PlanArchived: (409, "plan_archived"),
    subscription_errors.SubscriptionTransitionError: (409, "invalid_subscription_transition"),
    subscription_errors.SubscriptionExists: (409, "subscription_exists"),
    subscription_errors.CouponTermsConflict: (422, "coupon_terms"),
    subscription_errors.InvalidPlanConfiguration: (422, "plan_configuration_error"),
    subscription_errors.PlanCodeTaken: (409, "plan_code_taken"),
    subscription_errors.CouponCodeTaken: (409, "coupon_code_taken"),
    invoice_errors.BillingRunBusy: (409, "billing_run_busy"),
    webhook_errors.WebhookError: (400, "webhook_error"),
    webhook_errors.EndpointUrlRefused: (422, "endpoint_url_refused"),
    webhook_errors.UnknownEventType: (400, "unknown_event_type"),
    invoice_errors.MissingExchangeRate: (422, "exchange_rate_missing"),
    invoice_errors.InvalidRatesFile: (400, "invalid_rates_file"),
    # payments
    payment_errors.PaymentsNotConfigured: (409, "payments_not_configured"),
    payment_errors.PaymentMethodNotFound: (404, "payment_method_not_found"),
    payment_errors.PaymentError: (402, "payment_failed"),
    payment_errors.StripeUnavailable: (502, "stripe_unavailable"),
    payment_errors.InvalidPaymentRequest: (400, "invalid_request"),
    payment_errors.StripeRequestRefused: (422, "stripe_request_refused"),
    payment_errors.DunningError: (409, "dunning_not_open"),
    payment_errors.DunningTransitionError: (409, "invalid_dunning_transition"),
}


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def _instance(cls: type, message: str) -> BillingError:
    if issubclass(cls, FocusImportError):
        return cls(message, file="costs.csv", column="amount")
    if issubclass(cls, wallet_errors.InsufficientFunds):
        return cls(message, requested=D(5), available=D(1), currency="USD")
    return cls(message, param="amount") if not issubclass(cls, wallet_errors.WalletFrozen) else cls(message)


def test_every_billing_error_is_documented():
    # given every BillingError the apps define (their modules are imported above)
    defined = {cls for cls in _subclasses(BillingError) if not cls.__module__.startswith("tests.")}
    # then each has its documented status and code
    assert defined == set(DOCUMENTED)


@pytest.mark.parametrize("cls", sorted(DOCUMENTED, key=lambda c: c.__qualname__), ids=lambda c: c.__qualname__)
def test_billing_error_answers_its_status_code_message_and_param(cls):
    # given a refusal of that class
    status, code = DOCUMENTED[cls]
    error = _instance(cls, "amount must be greater than zero, got -5")
    # when the API handles it
    response = exception_handler(error, {})
    # then the body is the one error shape with the class's status and code
    assert response.status_code == status
    body = response.data["error"]
    # (a FOCUS file's error puts where it is first: "costs.csv, column amount: …")
    assert body["code"] == code and body["message"] == str(error)
    assert body["message"].endswith("amount must be greater than zero, got -5")
    assert body["param"] == error.param
    expected_type = {403: "permission_error"}.get(status, "api_error" if status >= 500 else "invalid_request_error")
    assert body["type"] == ("idempotency_error" if code == "idempotency_error" else expected_type)


def test_idempotency_error_names_the_key_unless_told_otherwise():
    assert IdempotencyError("used with other parameters").param == "idempotency_key"
    assert IdempotencyError("x", param="records[3].idempotency_key").param == "records[3].idempotency_key"


def test_billing_error_code_can_be_given_per_error_and_str_is_the_message():
    error = BillingError("idempotency_key must be a non-empty string", param="idempotency_key", code="invalid_request")
    response = exception_handler(error, {})
    assert str(error) == "idempotency_key must be a non-empty string"
    assert response.status_code == 400 and response.data["error"]["code"] == "invalid_request"


def test_ledger_immutable_is_a_bug_not_a_refusal():
    # given a code path that tried to change a ledger entry
    error = wallet_errors.LedgerImmutable("Ledger entries are append-only")
    # then it is no BillingError, and the API answers it as a bug
    assert not isinstance(error, BillingError)
    response = exception_handler(error, {})
    assert response.status_code == 500 and response.data["error"]["code"] == "internal_error"


def test_billing_errors_are_not_value_errors_except_a_missing_price():
    assert not issubclass(BillingError, ValueError)
    assert not issubclass(MoneyError, ValueError) and not issubclass(PeriodError, ValueError)
    assert issubclass(chargeback_errors.PriceNotFound, ValueError)


# --- parse_amount --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        (D("0.037"), {}, D("0.037")),
        (5, {}, D(5)),
        (D("1.000000000001"), {"positive": True}, D("1.000000000001")),
        (D("1.0000000000000"), {}, D("1.0000000000000")),  # trailing zeros are no extra places
        (D(0), {"not_negative": True}, D(0)),
        (D("-3.5"), {}, D("-3.5")),
        (D("12.50"), {"currency": "USD", "positive": True}, D("12.50")),
        (D("12.500"), {"currency": "USD"}, D("12.500")),
        ("12.5", {"currency": "EUR", "text": True}, D("12.5")),
        (D(1500), {"currency": "JPY"}, D(1500)),
        (D("1E+40"), {}, D("1E+40")),
        (D("0.1234567890123"), {"decimal_places": None}, D("0.1234567890123")),
    ],
)
def test_parse_amount_accepts_exact_amounts_unchanged(value, options, expected):
    parsed = parse_amount(value, param="amount", **options)
    assert parsed == expected and isinstance(parsed, Decimal)
    assert str(parsed) == str(expected)


@pytest.mark.parametrize(
    ("value", "options", "message"),
    [
        (0.5, {}, "amount is a float (0.5); send a Decimal (money is never a float)"),
        (True, {}, "amount must be a Decimal, got True"),
        (None, {}, "amount must be a Decimal, got None"),
        ("5", {}, "amount must be a Decimal, got '5'"),
        ([1], {"text": True}, "amount must be a Decimal or a decimal string, got [1]"),
        ("five", {"text": True}, "amount 'five' is not a number"),
        (D("NaN"), {}, "amount must be a finite number, got NaN"),
        (D("-Infinity"), {}, "amount must be a finite number, got -Infinity"),
        ("Infinity", {"text": True}, "amount must be a finite number, got Infinity"),
        (D(10) ** 15, {"below": D(10) ** 15}, "amount must be below 1,000,000,000,000,000, got 1000000000000000"),
        (D("0.0000000000001"), {}, "amount has more than 12 decimal places: 1E-13"),
        (D("0.001"), {"decimal_places": 2}, "amount has more than 2 decimal places: 0.001"),
        (D("0.001"), {"currency": "USD"}, "amount 0.001 has more decimals than USD's minor unit (0.01)"),
        (D("1.5"), {"currency": "JPY"}, "amount 1.5 has more decimals than JPY's minor unit (1)"),
        (D(0), {"positive": True}, "amount must be greater than zero, got 0"),
        (D("-1"), {"positive": True}, "amount must be greater than zero, got -1"),
        (D("-0.01"), {"not_negative": True}, "amount must not be negative, got -0.01"),
    ],
)
def test_parse_amount_refuses_what_is_not_money_naming_the_field(value, options, message):
    with pytest.raises(MoneyError) as refused:
        parse_amount(value, param="amount", **options)
    assert str(refused.value) == message
    assert refused.value.param == "amount" and refused.value.code == "invalid_amount"
    response = exception_handler(refused.value, {})
    assert response.status_code == 400 and response.data["error"]["param"] == "amount"
