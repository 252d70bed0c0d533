"""The Stripe client of the product: the official ``stripe`` SDK, configured from the settings only.

``settings.STRIPE_SECRET_KEY`` (env ``STRIPE_SECRET_KEY``) turns payments on; ``STRIPE_API_BASE``
points the SDK at another Stripe-compatible server (the tests' ``localstripe``); the webhook
secret (``STRIPE_WEBHOOK_SECRET``) is read by :func:`webhook_secret`. Nothing here logs, prints or
returns a key: errors are re-raised as the product's own (:func:`stripe_call`) with Stripe's
sentence for people, never the SDK's request details.

Usage::

    client = stripe_client()                        # raises PaymentsNotConfigured without a key
    customer = stripe_call(client.v1.customers.create, params={...}, idempotency_key="customer-team-7")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import stripe
from django.conf import settings

from .errors import PaymentError, PaymentsNotConfigured, StripeRequestRefused, StripeUnavailable

logger = logging.getLogger(__name__)

#: The Stripe API version the product is written against (the SDK's own pinned version).
API_VERSION = stripe.api_version

_clients: dict[tuple, stripe.StripeClient] = {}


def payments_configured() -> bool:
    """Whether payments go through Stripe: ``settings.STRIPE_SECRET_KEY`` is set (not blank)."""
    return bool((getattr(settings, "STRIPE_SECRET_KEY", "") or "").strip())


def payments_mode() -> str:
    """``"test mode"`` or ``"live mode"`` from the key's prefix (``sk_test_``/``rk_test_``), ``""`` when not
    configured; for the admin, which never shows the key."""
    key = (getattr(settings, "STRIPE_SECRET_KEY", "") or "").strip()
    if not key:
        return ""
    return "test mode" if "_test_" in key[:8] else "live mode"


def payments_require() -> None:
    """Raise :class:`PaymentsNotConfigured` (409, ``payments_not_configured``) unless configured."""
    if not payments_configured():
        raise PaymentsNotConfigured()


def webhook_secret() -> str:
    """``settings.STRIPE_WEBHOOK_SECRET`` (``whsec_…``); raises ``PaymentsNotConfigured`` when blank."""
    secret = (getattr(settings, "STRIPE_WEBHOOK_SECRET", "") or "").strip()
    if not secret:
        raise PaymentsNotConfigured("Stripe webhooks are not configured: set STRIPE_WEBHOOK_SECRET.")
    return secret


def stripe_client() -> stripe.StripeClient:
    """A ``stripe.StripeClient`` for the current settings (cached per key, base and timeouts).

    One client per configuration: the SDK's HTTP client (``requests``) is thread-safe for our use and
    keeps its connections alive. ``STRIPE_API_BASE`` (e.g. ``http://127.0.0.1:8420``) replaces
    ``https://api.stripe.com`` for the API (not for files or connect).

    Raises:
        PaymentsNotConfigured: ``STRIPE_SECRET_KEY`` is blank.
    """
    payments_require()
    key = settings.STRIPE_SECRET_KEY.strip()
    base = (getattr(settings, "STRIPE_API_BASE", "") or "").strip().rstrip("/")
    timeout = float(getattr(settings, "STRIPE_TIMEOUT_SECONDS", 30.0))
    retries = int(getattr(settings, "STRIPE_MAX_NETWORK_RETRIES", 2))
    cache_key = (key, base, timeout, retries)
    client = _clients.get(cache_key)
    if client is None:
        options: dict[str, Any] = {"max_network_retries": retries,
                                   "http_client": stripe.RequestsClient(timeout=timeout)}
        if base:
            options["base_addresses"] = {"api": base}
        client = stripe.StripeClient(key, **options)
        _clients.clear()  # a changed configuration (tests) never keeps the old key around
        _clients[cache_key] = client
    return client


def stripe_call(method: Callable[..., Any], *args: Any, idempotency_key: str | None = None,
                params: dict | None = None, **kwargs: Any) -> Any:
    """Call one SDK method and turn its errors into the product's.

    Args:
        method: a bound SDK service method (``client.v1.customers.create``).
        idempotency_key: sent as Stripe's ``Idempotency-Key`` (writes: derive it from the product's ids,
            so a retry after a lost answer does the write once).
        params: the request's parameters.

    Raises:
        PaymentError: (402) a card error: declined, expired, needs authentication. ``failure_code``
            is Stripe's decline code or code; the message Stripe's sentence for people.
        StripeUnavailable: (502) no answer, an authentication problem (a wrong key: the message says
            so without the key), rate limits, an API error.
        StripeRequestRefused: (422) Stripe refused the request as invalid; ``stripe_status`` 404 is an
            object Stripe does not have (callers turn it into their own 404).
    """
    options: dict[str, Any] = {}
    if idempotency_key:
        options["idempotency_key"] = idempotency_key
    call_kwargs = dict(kwargs)
    if params is not None:
        call_kwargs["params"] = params
    if options:
        call_kwargs["options"] = options
    try:
        return method(*args, **call_kwargs)
    except stripe.CardError as exc:
        intent = getattr(getattr(exc, "error", None), "payment_intent", None)
        raise PaymentError(_user_message(exc, "The card was declined."), failure_code=card_failure_code(exc),
                           payment_intent_id=stripe_id(intent)) from None
    except stripe.AuthenticationError:
        logger.error("Stripe refused the configured API key (authentication error)")
        raise StripeUnavailable("Stripe refused the configured API key; check STRIPE_SECRET_KEY.") from None
    except stripe.PermissionError:
        raise StripeUnavailable("The configured Stripe key may not do this.") from None
    except stripe.InvalidRequestError as exc:
        raise StripeRequestRefused(_user_message(exc, "Stripe refused the request."), stripe_status=exc.http_status,
                                   stripe_code=str(getattr(exc, "code", "") or "")) from None
    except stripe.APIConnectionError:
        logger.warning("Stripe did not answer")
        raise StripeUnavailable("Stripe did not answer; try again in a moment.") from None
    except stripe.StripeError as exc:
        logger.warning("Stripe answered an error: %s", type(exc).__name__)
        raise StripeUnavailable(_user_message(exc, "Stripe could not process the request; try again later.")) from None


def card_failure_code(exc: stripe.StripeError) -> str:
    """The most precise code of a card error: Stripe's ``decline_code``, else its ``code``."""
    error = getattr(exc, "error", None)
    decline = getattr(error, "decline_code", None) if error is not None else None
    return str(decline or getattr(exc, "code", None) or "card_error")


def _user_message(exc: stripe.StripeError, default: str) -> str:
    message = getattr(exc, "user_message", None)
    if not message or not isinstance(message, str):
        return default
    return message[:500]


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` of a Stripe object (the SDK's ``StripeObject``, or a plain dict), ``default`` when absent or null.

    The SDK's objects are not dicts (no ``.get``) and raise ``AttributeError`` for a missing key.
    """
    if obj is None:
        return default
    try:
        value = obj[name]
    except (KeyError, TypeError, AttributeError):
        return default
    return default if value is None else value


def stripe_id(value: Any) -> str:
    """The id of an expandable field: a string id, or an expanded object's ``id`` (``""`` for none)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(field(value, "id", ""))
