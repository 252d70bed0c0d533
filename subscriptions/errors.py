"""Errors of the subscription services: :class:`SubscriptionError` and its subclasses, each a ``BillingError``.

Each carries its ``code`` and HTTP status (``billing_site.errors`` has the table), ``message`` and
``param`` (the request field at fault, or ``None``). Nothing was written when one is raised:

* ``InvalidSubscriptionRequest`` (400, ``invalid_request``): malformed input (an unknown plan
  code, a user outside the team, a charge whose tiers do not fit its model).
* ``InvalidPlanConfiguration`` (422, ``plan_configuration_error``): a plan's charges that are each
  well-formed but do not go together (two charges on one meter, tiers that do not fit the charge
  model, a package charge without its package size).
* ``PlanImmutable`` (409, ``plan_immutable``): a price of a plan that has (or had) subscribers was
  to change; finance makes a new plan (or version) and moves the subscriptions to it.
* ``PlanCodeTaken`` (409, ``plan_code_taken``): another plan has the code already.
* ``PlanArchived`` (409, ``plan_archived``): a new subscription (or a move) to an archived plan.
* ``SubscriptionTransitionError`` (409, ``invalid_subscription_transition``): the subscription's
  status does not allow the move (``Subscription.TRANSITIONS``); the message names both statuses.
* ``SubscriptionExists`` (409, ``subscription_exists``): the subscriber already has a live
  (not canceled) subscription.
* ``CouponTermsConflict`` (422, ``coupon_terms``): a coupon's terms that do not fit together.
"""

from __future__ import annotations

from billing_site.errors import BillingError, InvalidRequest


class SubscriptionError(BillingError):
    """Base class: a subscription operation that was refused. Nothing was written when it is raised."""

    code = "subscription_error"
    http_status = 422


class InvalidSubscriptionRequest(InvalidRequest):
    """Input the caller got wrong (an unknown plan, a user outside the team, bad tiers). HTTP 400."""


class InvalidPlanConfiguration(SubscriptionError):
    """A plan's charges whose parts are each well-formed but do not go together (a meter twice, tiers
    that do not fit the charge model, a package charge without its size). HTTP 422."""

    code = "plan_configuration_error"
    http_status = 422


class PlanImmutable(SubscriptionError):
    """A plan's prices cannot change once it has subscribers: make a new plan (or version). HTTP 409."""

    code = "plan_immutable"
    http_status = 409


class PlanCodeTaken(SubscriptionError):
    """Another plan has this code already (codes are unique): the state of the books, not the input's shape. HTTP 409."""

    code = "plan_code_taken"
    http_status = 409


class CouponCodeTaken(SubscriptionError):
    """Another coupon has this code already (codes are unique): the state of the books, not the input's shape. HTTP 409."""

    code = "coupon_code_taken"
    http_status = 409


class PlanArchived(SubscriptionError):
    """The plan is archived: nobody new subscribes to it and nobody moves onto it. HTTP 409."""

    code = "plan_archived"
    http_status = 409


class SubscriptionTransitionError(SubscriptionError):
    """The subscription's status does not allow the requested move (``Subscription.TRANSITIONS``). HTTP 409."""

    code = "invalid_subscription_transition"
    http_status = 409


class SubscriptionExists(SubscriptionError):
    """The subscriber (a team, or one member of it) already has a live subscription. HTTP 409."""

    code = "subscription_exists"
    http_status = 409


class CouponTermsConflict(SubscriptionError):
    """A coupon's terms that are each well-formed but do not fit together (HTTP 422, ``coupon_terms``):
    both or neither of ``percent_off`` and ``amount_off``, a currency beside a percent or none beside an
    amount, ``duration_in_months`` without ``repeating`` or missing with it. ``param`` names the field."""

    code = "coupon_terms"
    http_status = 422
