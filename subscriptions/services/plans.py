"""Plans: create, edit (names only once used), archive, and new versions.

Prices are immutable once a plan has subscribers (any subscription, of any status, ever): the
fee, currency, interval, interval count, minimum commitment, charges and tiers. :func:`plan_update`
refuses a price change then with ``PlanImmutable`` (409, ``plan_immutable``) naming the fields;
finance calls :func:`plan_new_version` and moves the subscriptions with
``subscription_change_plan``. Amounts are Decimals (or decimal strings), checked by
``billing_site.money.parse_amount``; a refusal names the field (``charges[0].tiers[1].up_to``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from django.db import IntegrityError, transaction

from billing_site.money import currency_exponent, parse_amount

from ..charges import Tier, tiers_problem
from ..errors import InvalidPlanConfiguration, InvalidSubscriptionRequest, PlanCodeTaken, PlanImmutable
from ..models import Plan, PlanCharge, PlanChargeTier, Subscription

#: Fields of a plan that are its prices: frozen once the plan has subscribers.
PLAN_PRICE_FIELDS = ("fee", "currency", "interval", "interval_count", "minimum_commitment", "charges")
#: Fields that may change at any time.
PLAN_FREE_FIELDS = ("name", "tier", "description", "trial_days", "status")

_CHARGE_KEYS = {"meter", "resource_type", "feature_key", "provider", "unit", "included_units", "charge_model", "price",
                "price_per_units", "package_size", "tiers"}


def plan_has_subscribers(plan: Plan) -> bool:
    """Whether any subscription (any status, ever) is or was on ``plan``: then its prices never change."""
    return Subscription.objects.filter(plan=plan).exists() or Subscription.objects.filter(pending_plan=plan).exists()


def _amount(value, param: str, *, positive: bool = False, text: bool = True) -> Decimal:
    return parse_amount(value, param=param, positive=positive, not_negative=True, text=text)


def _charge_rows(plan: Plan, charges: Sequence[Mapping]) -> list[tuple[PlanCharge, list[PlanChargeTier]]]:
    rows = []
    meters = set()
    for i, spec in enumerate(charges):
        where = f"charges[{i}]"
        if not isinstance(spec, Mapping):
            raise InvalidSubscriptionRequest(f"{where} must be an object", param=where)
        unknown = set(spec) - _CHARGE_KEYS
        if unknown:
            raise InvalidSubscriptionRequest(f"{where} has unknown fields: {', '.join(sorted(unknown))}", param=where)
        meter = str(spec.get("meter") or "").strip()
        if not meter:
            raise InvalidSubscriptionRequest(f"{where}.meter must be a name", param=f"{where}.meter")
        if meter in meters:  # each charge is well-formed; together they are not (422)
            raise InvalidPlanConfiguration(f"{where}.meter must be unique in the plan: {meter} has a charge already",
                                           param=f"{where}.meter")
        meters.add(meter)
        if not str(spec.get("resource_type") or "").strip():
            raise InvalidSubscriptionRequest(f"{where}.resource_type is required", param=f"{where}.resource_type")
        model = spec.get("charge_model", PlanCharge.ChargeModel.STANDARD)
        if model not in PlanCharge.ChargeModel.values:
            raise InvalidSubscriptionRequest(f"{where}.charge_model must be one of {', '.join(PlanCharge.ChargeModel.values)}",
                                             param=f"{where}.charge_model")
        charge = PlanCharge(
            plan=plan, meter=meter, resource_type=spec["resource_type"], feature_key=spec.get("feature_key", ""),
            provider=spec.get("provider", ""), unit=spec.get("unit", ""), charge_model=model, position=i,
            included_units=_amount(spec.get("included_units", 0), f"{where}.included_units"),
            price=_amount(spec.get("price", 0), f"{where}.price"),
            price_per_units=_amount(spec.get("price_per_units", 1), f"{where}.price_per_units", positive=True),
        )
        if model == PlanCharge.ChargeModel.PACKAGE:
            if spec.get("package_size") in (None, ""):
                raise InvalidPlanConfiguration(f"{where}.package_size: a package charge needs its package size",
                                               param=f"{where}.package_size")
            charge.package_size = _amount(spec.get("package_size"), f"{where}.package_size", positive=True)
        tiers = []
        for j, t in enumerate(spec.get("tiers") or ()):
            up_to = t.get("up_to")
            tiers.append(PlanChargeTier(
                position=j, up_to=None if up_to in (None, "", "inf") else _amount(up_to, f"{where}.tiers[{j}].up_to", positive=True),
                unit_price=_amount(t.get("unit_price", 0), f"{where}.tiers[{j}].unit_price"),
                flat_fee=_amount(t.get("flat_fee", 0), f"{where}.tiers[{j}].flat_fee"),
            ))
        problem = tiers_problem(model, [Tier(t.up_to, t.unit_price, t.flat_fee) for t in tiers])
        if problem:
            raise InvalidPlanConfiguration(f"{where}: {problem}", param=f"{where}.tiers")
        rows.append((charge, tiers))
    return rows


def _charges_save(plan: Plan, charges: Sequence[Mapping]) -> None:
    rows = _charge_rows(plan, charges)
    plan.charges.all().delete()
    PlanCharge.objects.bulk_create([c for c, _ in rows])
    tiers = []
    for charge, charge_tiers in rows:
        for t in charge_tiers:
            t.charge = charge
            tiers.append(t)
    PlanChargeTier.objects.bulk_create(tiers)


def _check_fields(fields: Mapping) -> dict:
    out = dict(fields)
    if "currency" in out:
        out["currency"] = str(out["currency"]).upper()
        currency_exponent(out["currency"])
    if "fee" in out:
        out["fee"] = _amount(out["fee"], "fee")
    if out.get("minimum_commitment") is not None and "minimum_commitment" in out:
        out["minimum_commitment"] = _amount(out["minimum_commitment"], "minimum_commitment")
    if "interval" in out and out["interval"] not in Plan.Interval.values:
        raise InvalidSubscriptionRequest("interval must be 'month' or 'year'", param="interval")
    if "interval_count" in out and (not isinstance(out["interval_count"], int) or out["interval_count"] < 1):
        raise InvalidSubscriptionRequest("interval_count must be a whole number of at least 1", param="interval_count")
    if "trial_days" in out and (not isinstance(out["trial_days"], int) or out["trial_days"] < 0):
        raise InvalidSubscriptionRequest("trial_days must be a whole number of days, 0 or more", param="trial_days")
    if "status" in out and out["status"] not in Plan.Status.values:
        raise InvalidSubscriptionRequest("status must be 'active' or 'archived'", param="status")
    return out


def plan_create(*, code: str, name: str, tier: str, currency: str, fee: Decimal, interval: str = "month",
                interval_count: int = 1, trial_days: int = 0, minimum_commitment: Decimal | None = None,
                description: str = "", charges: Sequence[Mapping] = (), replaces: Plan | None = None,
                version: int = 1) -> Plan:
    """Create a plan and its charges (one per meter) in one transaction.

    Args:
        code: unique slug (``pro-monthly``); name, tier (``starter``…), description: text.
        currency: ISO 4217; fee: per period, ≥ 0; interval ``month``/``year`` × ``interval_count``.
        trial_days: days of a new subscription's trial (0: none).
        minimum_commitment: optional minimum of fee + overage per period, ≥ 0.
        charges: ``[{"meter", "resource_type", "feature_key"?, "provider"?, "unit"?, "included_units"?,
            "charge_model"?: standard|package|graduated|volume, "price"?, "price_per_units"?,
            "package_size"?, "tiers"?: [{"up_to" (None for the last), "unit_price", "flat_fee"?}]}]``;
            amounts as Decimals or decimal strings.

    Raises:
        PlanCodeTaken: the code is in use (409).
        InvalidPlanConfiguration: charges that do not go together: a meter twice, tiers unfit for the model (422).
        InvalidSubscriptionRequest: a malformed charge or tier (``param`` names it).
        MoneyError: an amount that is not money (``param`` names it).
    """
    fields = _check_fields({"code": code, "name": name, "tier": tier, "currency": currency, "fee": fee,
                            "interval": interval, "interval_count": interval_count, "trial_days": trial_days,
                            "minimum_commitment": minimum_commitment, "description": description})
    with transaction.atomic():
        plan = Plan(replaces=replaces, version=version, **fields)
        try:
            with transaction.atomic():
                plan.save()
        except IntegrityError:
            raise PlanCodeTaken(f"plan code {code!r} is in use", param="code") from None
        _charges_save(plan, charges)
    return plan


def plan_update(*, plan: Plan, **fields) -> Plan:
    """Change a plan's fields; ``charges=[...]`` replaces its charges. Prices are refused once the plan is used.

    Raises:
        PlanImmutable: a price field (``PLAN_PRICE_FIELDS``) of a plan with subscribers; the message
            names the fields and says to make a new plan (or version).
        InvalidSubscriptionRequest: an unknown or malformed field.
    """
    unknown = set(fields) - set(PLAN_PRICE_FIELDS) - set(PLAN_FREE_FIELDS)
    if unknown:
        raise InvalidSubscriptionRequest(f"plan fields that cannot be changed: {', '.join(sorted(unknown))}",
                                         param=sorted(unknown)[0])
    charges = fields.pop("charges", None)
    fields = _check_fields(fields)
    with transaction.atomic():
        locked = Plan.objects.select_for_update().get(pk=plan.pk)
        changed = [name for name, value in fields.items() if name in PLAN_PRICE_FIELDS and getattr(locked, name) != value]
        if charges is not None:
            changed.append("charges")
        if changed and plan_has_subscribers(locked):
            raise PlanImmutable(
                f"plan {locked.code} has subscribers: its prices ({', '.join(changed)}) never change. Make a new plan "
                "(or a new version) and move the subscriptions to it", param=changed[0])
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save()
        if charges is not None:
            _charges_save(locked, charges)
    return locked


def plan_archive(*, plan: Plan) -> Plan:
    """Archive a plan: no new subscriptions or moves onto it; existing ones keep renewing on it."""
    return plan_update(plan=plan, status=Plan.Status.ARCHIVED)


def plan_charges_spec(plan: Plan) -> list[dict]:
    """The plan's charges as ``plan_create``'s ``charges`` argument (to copy them into a new version)."""
    return [
        {"meter": c.meter, "resource_type": c.resource_type, "feature_key": c.feature_key, "provider": c.provider,
         "unit": c.unit, "included_units": c.included_units, "charge_model": c.charge_model, "price": c.price,
         "price_per_units": c.price_per_units, "package_size": c.package_size,
         "tiers": [{"up_to": t.up_to, "unit_price": t.unit_price, "flat_fee": t.flat_fee} for t in c.tiers.all()]}
        for c in plan.charges.prefetch_related("tiers").order_by("position", "meter")
    ]


def plan_new_version(*, plan: Plan, code: str, **changes) -> Plan:
    """A copy of ``plan`` (charges and tiers too) with ``changes`` applied, ``version + 1``, ``replaces=plan``.

    The old plan is left as it is (archive it with :func:`plan_archive` when nobody should join it).
    """
    base = {"name": plan.name, "tier": plan.tier, "currency": plan.currency, "fee": plan.fee, "interval": plan.interval,
            "interval_count": plan.interval_count, "trial_days": plan.trial_days,
            "minimum_commitment": plan.minimum_commitment, "description": plan.description,
            "charges": plan_charges_spec(plan)}
    base.update(changes)
    return plan_create(code=code, replaces=plan, version=plan.version + 1, **base)
