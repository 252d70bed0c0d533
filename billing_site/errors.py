"""The one error base of the billing product: :class:`BillingError`, and the errors every app shares.

A ``BillingError`` is a refusal a user can act on: nothing was written when it is raised. It carries

* ``code``: a stable machine-readable string, the ``error.code`` of the API's error body;
* ``http_status``: the status the API answers with;
* ``message``: a sentence for people, naming the figures at fault (``str(error)`` gives it);
* ``param``: the request field at fault (``amount``, ``records[3].quantity``), or ``None``.

``code`` and ``http_status`` are class attributes: each subclass carries its own, so the API's
handler (``billing_site.api.errors.exception_handler``) maps any ``BillingError`` to
``{"error": {"type", "code", "message", "param"}}`` with ``http_status`` and knows no app.
Admin views and commands show ``message``. A bug (an append-only ledger entry being changed, a
broken invariant) is not a ``BillingError``: it stays a plain exception and the API answers 500.

Every app derives its errors from this base (``teams.errors``, ``chargeback.errors``,
``chargeback.periods.PeriodError``, ``wallets.errors``, ``invoices.errors``,
``billing_site.money.MoneyError`` and ``AmountOutOfRange``). The codes and their statuses:

========================  ======  ================================================================
code                      status  class: meaning
========================  ======  ================================================================
invalid_request           400     :class:`InvalidRequest` (and ``invoices``' ``InvalidInvoiceRequest``,
                                  ``teams``' ``InvalidTeamRequest``, ``InvalidApiKeyRequest``): input
                                  the caller got wrong (a malformed idempotency key, an unknown user,
                                  an unknown field or reason)
invalid_amount            400     ``money.MoneyError``, ``wallets``' ``InvalidAmount``: an amount that
                                  cannot be money (a float, zero, negative, not finite, too many
                                  decimal places)
invalid_usage             400     ``chargeback``' ``InvalidUsage``: a usage record that cannot be kept
invalid_period            400     ``chargeback.periods.PeriodError``: not a whole calendar month
invalid_focus_file        400     ``chargeback.focus``' ``FocusImportError``: a FOCUS file that cannot
                                  be imported (the message names the file, row, line and column)
invalid_team_mapping      400     ``chargeback``' ``TeamMappingError``: a team mapping that cannot be
                                  recorded (``param`` names the field)
insufficient_funds        402     ``wallets``' ``InsufficientFunds``: available credit below the amount
provider_not_allowed      403     ``wallets``' ``ProviderNotAllowed``: the team does not allow it
idempotency_error         409     :class:`IdempotencyError`: the key was used with other parameters
wallet_frozen             409     ``wallets``' ``WalletFrozen``: no charges or holds on the wallet
hold_not_open             409     ``wallets``' ``HoldNotOpen``: captured or released already
stale_allocation_run      409     ``chargeback``' ``StaleAllocationRun``: usage changed since the draft
usage_record_void         409     ``chargeback``' ``UsageRecordVoid``: the usage record is void already
invalid_transition        409     ``invoices``' ``InvalidTransition``: the status forbids the move
invoice_immutable         409     ``invoices``' ``InvoiceImmutable``: issued documents never change
duplicate_invoice_number  409     ``invoices``' ``DuplicateInvoiceNumber``: the number is taken
period_order              422     :class:`PeriodOrder`: a well-formed range whose end is not after
                                  its start (``param`` names the end)
idempotency_key_required  422     :class:`IdempotencyKeyRequired`: a money-moving request without an
                                  idempotency key (header or body); ``idempotency_key_mismatch``
                                  when the header and the body give different keys
team_required             422     :class:`TeamRequired`: the caller belongs to several teams or to
                                  none, and named no team
price_not_found           422     ``chargeback``' ``PriceNotFound``: no catalog price at that time
currency_not_allowed      422     ``teams``' ``CurrencyNotAllowed``: usage or a charge in a currency
                                  the team is not billed in (its own, or an extra currency of its
                                  billing settings); ``param`` names the currency field
allocation_error          422     ``chargeback``' ``AllocationError``: a run that cannot be computed
                                  or committed; more precisely ``nothing_to_allocate``,
                                  ``rule_configuration_error`` (all 422)
credit_exceeds_invoice    422     ``invoices``' ``CreditNoteLimitExceeded``: more than is left
amount_out_of_range       422     ``money.AmountOutOfRange``: a well-formed amount whose result
                                  would pass ``money.METERED_BOUND`` (10^18), what the columns hold
invoice_generation_error  422     ``invoices``' ``InvoiceGenerationError``: nothing to bill, no run
plan_immutable            409     ``subscriptions``' ``PlanImmutable``: a used plan's prices never change
plan_code_taken           409     ``subscriptions``' ``PlanCodeTaken``: another plan has the code
coupon_code_taken         409     ``subscriptions``' ``CouponCodeTaken``: another coupon has the code
plan_archived             409     ``subscriptions``' ``PlanArchived``: nobody new joins an archived plan
invalid_subscription_     409     ``subscriptions``' ``SubscriptionTransitionError``: the status
transition                        forbids the move (``Subscription.TRANSITIONS``)
subscription_exists       409     ``subscriptions``' ``SubscriptionExists``: one live subscription each
subscription_error        422     ``subscriptions``' ``SubscriptionError``: a subscription refusal
coupon_terms              422     ``subscriptions``' ``CouponTermsConflict``: a coupon's terms that
                                  do not fit together (percent or amount, currency, duration months)
plan_configuration_error  422     ``subscriptions``' ``InvalidPlanConfiguration``: a plan's charges
                                  that do not go together (a meter twice, tiers unfit for the model)
billing_run_busy          409     ``invoices``' ``BillingRunBusy``: a billing run of the period is
                                  already waiting to start
endpoint_url_refused      422     ``webhooks``' ``EndpointUrlRefused``: a webhook URL the SSRF guard
                                  refuses (not https, a private, loopback or link-local address)
unknown_event_type        400     ``webhooks``' ``UnknownEventType``: not a webhook event type
exchange_rate_missing     422     ``invoices``' ``MissingExchangeRate``: no rate for a currency pair
                                  and date a converted invoice needs (the message names both)
invalid_rates_file        400     ``invoices``' ``InvalidRatesFile``: an ECB rates file that cannot
                                  be read (the message names the line and column)
payments_not_configured   409     ``payments``' ``PaymentsNotConfigured``: no ``STRIPE_SECRET_KEY``;
                                  payments are recorded by hand
payment_failed            402     ``payments``' ``PaymentError``: Stripe refused the card or the
                                  payment (declined, no card on file); the message is Stripe's
payment_method_not_found  404     ``payments``' ``PaymentMethodNotFound``: not a card of the team
stripe_unavailable        502     ``payments``' ``StripeUnavailable``: Stripe did not answer (retry)
stripe_request_refused    422     ``payments``' ``StripeRequestRefused``: Stripe refused the request
                                  as invalid (an object it does not have, a detached card)
dunning_not_open          409     ``payments``' ``DunningError``: dunning cannot start, the invoice
                                  awaits no payment (paid, cancelled, nothing due)
invalid_dunning_          409     ``payments``' ``DunningTransitionError``: a dunning status move
transition                        ``Dunning.TRANSITIONS`` forbids
========================  ======  ================================================================

The API's ``type`` follows from the status, except ``idempotency_error``, whose type is
``idempotency_error`` (Stripe's error types; docs/api.md, "Errors").
"""

from __future__ import annotations


class BillingError(Exception):
    """A refused billing operation; nothing was written. Subclasses set ``code`` and ``http_status``.

    Args:
        message: what is wrong, for people (the API's ``error.message``).
        param: the request field at fault (``"amount"``, ``"records[3].quantity"``), or ``None``.
        code: overrides the class's ``code`` for this one error (rarely needed: prefer a subclass).
    """

    code: str = "billing_error"
    http_status: int = 400

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidRequest(BillingError):
    """Input the caller got wrong in a way no more precise error names (a malformed idempotency key,
    a user outside the team, malformed items, too short a retention). HTTP 400."""

    code = "invalid_request"
    http_status = 400


class IdempotencyError(BillingError):
    """The idempotency key was already used with different parameters (Stripe's semantics). HTTP 409.

    ``param`` is ``idempotency_key`` unless the key sits elsewhere (``records[3].idempotency_key``).
    """

    code = "idempotency_error"
    http_status = 409

    def __init__(self, message: str, *, param: str | None = "idempotency_key", code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)


class PeriodOrder(BillingError):
    """A well-formed date range whose end is not after its start. HTTP 422.

    Each date is valid on its own, so the request's shape is right and only the pair is not (the
    end is exclusive: ``[period_start, period_end)`` must hold at least one day). ``param`` names
    the end field.
    """

    code = "period_order"
    http_status = 422


class TeamRequired(BillingError):
    """The request names no team, and the caller's teams do not say which one: they belong to several,
    or to none (finance). HTTP 422, ``param`` ``team``."""

    code = "team_required"
    http_status = 422


class IdempotencyKeyRequired(BillingError):
    """A money-moving request that names no idempotency key, in the ``Idempotency-Key`` header or the
    body's ``idempotency_key`` (code ``idempotency_key_required``), or names two different ones
    (``idempotency_key_mismatch``). HTTP 422, ``param`` ``idempotency_key``."""

    code = "idempotency_key_required"
    http_status = 422

    def __init__(self, message: str, *, param: str | None = "idempotency_key", code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
