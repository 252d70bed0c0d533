"""``POST /webhooks/stripe/``: Stripe's events in (``payments.services.stripe_events``).

Outside ``/api/``: Stripe signs the body, it sends no API key and no CSRF token (hence
``csrf_exempt``; the signature is the authentication). Answers, all JSON:

* 200 ``{"received": true, "event": "evt_…", "outcome": …, "replayed": bool}``;
* 400 ``invalid_signature``: a missing or wrong ``Stripe-Signature`` header, a timestamp older
  than the SDK's tolerance (300 s), or a body that is not an event; nothing is written;
* 409 ``payments_not_configured``: no ``STRIPE_WEBHOOK_SECRET`` (nothing is read);
* 502 ``stripe_unavailable``: the event's object could not be read again from Stripe (nothing is
  recorded: Stripe delivers the event again later); 500 for a bug, likewise.

The signature header, the secret and the body are never logged or echoed.
"""

from __future__ import annotations

import logging

import stripe
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .errors import PaymentsNotConfigured, StripeUnavailable
from .services.stripe_events import stripe_event_process
from .stripe_client import webhook_secret

logger = logging.getLogger(__name__)


def _error(status: int, code: str, message: str) -> JsonResponse:
    kind = "api_error" if status >= 500 else "invalid_request_error"
    return JsonResponse({"error": {"type": kind, "code": code, "message": message, "param": None}}, status=status)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        secret = webhook_secret()
    except PaymentsNotConfigured as off:
        return _error(off.http_status, off.code, off.message)
    try:
        event = stripe.Webhook.construct_event(request.body, request.headers.get("Stripe-Signature"), secret)
    except stripe.SignatureVerificationError:
        return _error(400, "invalid_signature", "The Stripe-Signature header is missing, wrong or too old.")
    except ValueError:
        return _error(400, "invalid_signature", "The body is not a Stripe event.")
    try:
        processed = stripe_event_process(event=event)
    except (StripeUnavailable, PaymentsNotConfigured) as unavailable:
        logger.warning("Stripe event %s not processed: %s", event.id, unavailable.code)
        return _error(unavailable.http_status, unavailable.code, unavailable.message)
    return JsonResponse({"received": True, "event": processed.event.event_id, "outcome": processed.event.outcome,
                         "replayed": processed.replayed})
