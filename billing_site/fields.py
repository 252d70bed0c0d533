"""Model field pieces every app's models share: money and currency columns, their defaults and validators.

Money columns follow ``billing_site.money``: a metered amount is ``DecimalField(30, 12)`` with a
``currency`` (ISO 4217) column beside it. Migrations name the defaults and validators here by
their dotted path, so they stay in this module under these names.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from billing_site.money import METERED_DECIMAL_PLACES, METERED_MAX_DIGITS
from billing_site.text import bad_text_path


def default_currency() -> str:
    """``settings.BILLING_DEFAULT_CURRENCY``, read when a row is made (not frozen at import)."""
    return settings.BILLING_DEFAULT_CURRENCY


def default_payment_terms_days() -> int:
    """``settings.BILLING_PAYMENT_TERMS_DAYS``: days from issue to an invoice's due date."""
    return settings.BILLING_PAYMENT_TERMS_DAYS


def MeteredAmountField(**kwargs) -> models.DecimalField:  # noqa: N802 - reads as a field class
    """A metered money or quantity column: 30 digits, 12 of them decimals."""
    return models.DecimalField(
        max_digits=METERED_MAX_DIGITS, decimal_places=METERED_DECIMAL_PLACES, **kwargs
    )


def CurrencyField(**kwargs) -> models.CharField:  # noqa: N802
    """An ISO 4217 currency code, defaulting to :func:`default_currency`."""
    kwargs.setdefault("default", default_currency)
    return models.CharField(max_length=3, **kwargs)


def split_email_list(value: str) -> list[str]:
    """``"a@x.com, b@y.com"`` → ``["a@x.com", "b@y.com"]`` (blanks dropped)."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def validate_email_list(value: str) -> None:
    """Validate a comma-separated list of e-mail addresses (empty is allowed).

    Raises ``ValidationError`` (code ``invalid_email``) naming the first bad address.
    """
    for address in split_email_list(value):
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(f"{address!r} is not a valid e-mail address.", code="invalid_email") from None


def validate_storable_json(value) -> None:
    """Refuse a JSON value holding a NUL or an unpaired surrogate (``billing_site.text``), naming
    its place: PostgreSQL's ``jsonb`` cannot store it, and the admin would fail on the write."""
    path = bad_text_path(value)
    if path is not None:
        raise ValidationError(f"{path}: text may not contain \\u0000 (NUL) or an unpaired surrogate.",
                              code="bad_text")
