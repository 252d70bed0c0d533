"""Errors of the payments app, each a ``BillingError`` (``billing_site.errors`` has the table).

* ``PaymentsNotConfigured`` (409, ``payments_not_configured``): no ``STRIPE_SECRET_KEY``; payments are
  recorded by hand (invoices → Mark paid) and nothing talks to Stripe.
* ``PaymentMethodNotFound`` (404, ``payment_method_not_found``): not a payment method of the team's customer.
* ``PaymentError`` (402, ``payment_failed``): Stripe refused a payment or a card (declined, expired); the
  message is Stripe's sentence for people, ``decline_code``/``failure_code`` the code.
* ``StripeUnavailable`` (502, ``stripe_unavailable``): Stripe did not answer or answered an error the
  product cannot act on; nothing was written, the request may be retried.
* ``StripeRequestRefused`` (422, ``stripe_request_refused``): Stripe refused the request as invalid (an
  object that does not exist there, a card detached meanwhile); ``stripe_status``/``stripe_code`` are Stripe's.
* ``InvalidPaymentRequest`` (400, ``invalid_request``): input the caller got wrong, naming the field.
* ``DunningError`` (409, ``dunning_not_open``): dunning cannot start, the invoice awaits no payment.
* ``DunningTransitionError`` (409, ``invalid_dunning_transition``): ``Dunning.TRANSITIONS`` forbids it.

No message ever carries the API key or the webhook secret: they are built from the product's own
words and Stripe's ``user_message``/``code``, never from the SDK's request details.
"""

from __future__ import annotations

from billing_site.errors import BillingError, InvalidRequest


class PaymentsNotConfigured(BillingError):
    """Stripe is not configured (no ``STRIPE_SECRET_KEY``): payments are recorded by hand. HTTP 409."""

    code = "payments_not_configured"
    http_status = 409

    def __init__(self, message: str = "Payments are not configured: set STRIPE_SECRET_KEY to take payments "
                                      "through Stripe; until then record payments by hand.", *, param=None):
        super().__init__(message, param=param)


class PaymentMethodNotFound(BillingError):
    """The payment method is not one of the team's customer's. HTTP 404."""

    code = "payment_method_not_found"
    http_status = 404


class PaymentError(BillingError):
    """Stripe refused the payment or the card (declined, expired, needs authentication). HTTP 402."""

    code = "payment_failed"
    http_status = 402

    def __init__(self, message: str, *, failure_code: str = "", payment_intent_id: str = "", param=None):
        super().__init__(message, param=param)
        self.failure_code = failure_code
        #: The PaymentIntent Stripe created before refusing it (Stripe names it in the error), or "".
        self.payment_intent_id = payment_intent_id


class StripeUnavailable(BillingError):
    """Stripe did not answer, or answered an error the product cannot act on. HTTP 502."""

    code = "stripe_unavailable"
    http_status = 502


class StripeRequestRefused(BillingError):
    """Stripe refused a request as invalid (an object that does not exist, a card detached meanwhile, a
    refund of a refunded charge). HTTP 422; ``stripe_status`` and ``stripe_code`` are Stripe's."""

    code = "stripe_request_refused"
    http_status = 422

    def __init__(self, message: str, *, stripe_status: int | None = None, stripe_code: str = "", param=None):
        super().__init__(message, param=param)
        self.stripe_status = stripe_status
        self.stripe_code = stripe_code


class InvalidPaymentRequest(InvalidRequest):
    """Input the caller got wrong (an unknown field, a malformed id or amount). HTTP 400."""


class DunningError(BillingError):
    """Dunning cannot start: the invoice is not issued and awaiting payment (paid, cancelled, a draft,
    nothing due). HTTP 409, ``dunning_not_open``."""

    code = "dunning_not_open"
    http_status = 409


class DunningTransitionError(BillingError):
    """A dunning status move that ``Dunning.TRANSITIONS`` forbids. HTTP 409, ``invalid_dunning_transition``."""

    code = "invalid_dunning_transition"
    http_status = 409
