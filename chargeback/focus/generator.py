"""A deterministic generator of realistic FOCUS 1.0 cost files, for the demo and the benchmarks.

``write_focus_file(path, rows=5000, period="2026-10", seed=42)`` writes a CSV with the 44 columns of
the FOCUS sample (the 43 FOCUS 1.0 columns it carries plus ``Id``), in the same order and with the
same quoting: text double-quoted, numbers bare, missing values as the bare word ``NULL``.

What the rows look like:

* three providers (AWS, Microsoft, Google Cloud), each with its billing account, a few sub-accounts
  and realistic services, SKUs, units and list prices;
* ``Tags`` with ``application``, ``environment`` and ``business_unit`` on most rows, from the
  fixed list ``BUSINESS_UNITS`` (the demo teams); some rows carry Tags without ``business_unit``,
  some no Tags at all (``NULL``), as in real bills;
* hourly charge periods (``ChargePeriodStart``/``End``) within the billing month, and the month as
  ``BillingPeriodStart``/``End`` (end exclusive, FOCUS style);
* ``BilledCost`` = quantity × unit price with 11 decimal places; a few negative ``Credit`` and
  ``Adjustment`` rows.

The same ``seed`` (and period) gives the same bytes, gzip included (its header carries no time or
name), and a file of ``n`` rows is the first ``n`` rows of any longer file of the same seed. Rows
are written as they are made: memory does not depend on ``rows``. Randomness comes only from a
``random.Random(seed)`` of the call, never the global generator.
"""

from __future__ import annotations

import datetime as dt
import gzip as gzip_module
import io
import random
import uuid
from bisect import bisect
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from itertools import accumulate
from pathlib import Path

from chargeback.periods import BillingPeriod

#: The columns of the FOCUS sample, in its order (43 FOCUS 1.0 columns and ``Id``).
FOCUS_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus",
    "CommitmentDiscountType", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
    "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "RegionId",
    "RegionName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory", "Id", "ServiceName",
    "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)

#: The business units of the generated Tags; they become the demo's teams (slug = the value).
BUSINESS_UNITS = (
    "checkout", "search", "ml-platform", "platform", "support", "payments",
    "mobile-app", "data-warehouse", "identity", "marketing-site", "logistics", "recommendations",
)
#: Relative size of each business unit's cloud spend (same order as ``BUSINESS_UNITS``).
_BU_WEIGHTS = (14, 12, 16, 13, 6, 9, 7, 10, 4, 3, 3, 5)

_CURRENCY = "USD"
_COST_PLACES = Decimal("1E-11")  # FOCUS BilledCost as providers write it: 11 decimal places
_QUANTITY_PLACES = Decimal("1E-15")
_SHARE_UNTAGGED = 0.06        # rows without Tags
_SHARE_TAGS_WITHOUT_BU = 0.03  # rows whose Tags lack business_unit
_SHARE_CREDIT = 0.002
_SHARE_ADJUSTMENT = 0.001
_ENVIRONMENTS = ("prod", "prod", "prod", "staging", "dev")
_APPLICATIONS = ("api", "worker", "web", "batch", "db")


@dataclass(frozen=True)
class _Sku:
    sku_id: str
    description: str
    unit: str
    unit_price: Decimal
    quantity_max: int  # a row's quantity is drawn from (0, quantity_max], in millionths
    resource_type: str | None = None


@dataclass(frozen=True)
class _Service:
    name: str
    category: str
    resource_prefix: str
    skus: tuple[_Sku, ...]


@dataclass(frozen=True)
class _Provider:
    name: str
    issuer: str
    billing_account_id: str
    billing_account_name: str
    regions: tuple[tuple[str, str], ...]  # (RegionId, RegionName)
    services: tuple[_Service, ...]
    weight: int


def _sku(sku_id, description, unit, price, quantity_max, resource_type=None) -> _Sku:
    return _Sku(sku_id, description, unit, Decimal(price), quantity_max, resource_type)


_PROVIDERS = (
    _Provider(
        "AWS", "Amazon Web Services, Inc.", "123456789012", "Example Corp",
        (("us-east-1", "US East (N. Virginia)"), ("us-west-2", "US West (Oregon)"),
         ("eu-central-1", "EU (Frankfurt)")),
        (
            _Service("Amazon Elastic Compute Cloud", "Compute", "arn:aws:ec2:{region}:{account}:instance/i-", (
                _sku("JRTCKXETXF6Y8MU2", "$0.096 per On Demand Linux m5.large Instance Hour", "Hours", "0.096", 1),
                _sku("H6T3SYB5G6QCVMZM", "$0.136 per On Demand Linux c6g.xlarge Instance Hour", "Hours", "0.136", 1),
                _sku("9MG5B7V4UUU2WPAV", "$0.08 per GB-month of General Purpose (gp3) provisioned storage",
                     "GB-Months", "0.08", 2, "volume"),
                _sku("HSRFWQ3TJGWVZ2EK", "$0.010 per GB - regional data transfer - in/out/between EC2 AZs",
                     "GB", "0.01", 40),
            )),
            _Service("Amazon Simple Storage Service", "Storage", "arn:aws:s3:::", (
                _sku("WP9ANXZGBYYSGJEA", "$0.023 per GB - first 50 TB / month of storage used", "GB-Months",
                     "0.023", 60, "bucket"),
                _sku("QCQ2XDAT8PB6KWGK", "$0.005 per 1,000 PUT, COPY, POST, or LIST requests", "Requests",
                     "0.000005", 20000, "bucket"),
            )),
            _Service("Amazon Relational Database Service", "Databases", "arn:aws:rds:{region}:{account}:db:", (
                _sku("QZ7WMCSS4CFHMZ3E", "$0.225 per RDS db.r6g.large Multi-AZ instance hour", "Hours", "0.225", 1),
                _sku("EU8ZSPRJ45C7X2Y6", "$0.115 per GB-month of provisioned gp2 storage", "GB-Months", "0.115", 3),
            )),
            _Service("AWS Lambda", "Compute", "arn:aws:lambda:{region}:{account}:function:", (
                _sku("TG3MKPYUP4PT6FVG", "AWS Lambda - Total Compute - US East (N. Virginia)",
                     "Lambda-GB-Second", "0.0000166667", 40000),
                _sku("CVETTAHGXLNRP8EV", "AWS Lambda - Total Requests", "Requests", "0.0000002", 90000),
            )),
            _Service("Amazon CloudFront", "Networking", "arn:aws:cloudfront::{account}:distribution/E", (
                _sku("N7WSYHVUT72KMK3V", "$0.085 per GB - first 10 TB / month data transfer out",
                     "GB", "0.085", 25),
            )),
            _Service("Amazon DynamoDB", "Databases", "arn:aws:dynamodb:{region}:{account}:table/", (
                _sku("R6PXMNYCEDGZ2EYN", "$0.25 per million read request units", "ReadRequestUnits",
                     "0.00000025", 500000),
                _sku("QVNB4ZHQT37QYZ6M", "$1.25 per million write request units", "WriteRequestUnits",
                     "0.00000125", 120000),
            )),
            _Service("AmazonCloudWatch", "Management and Governance", "arn:aws:logs:{region}:{account}:log-group:", (
                _sku("MN45SJANDTCPR9QA", "$0.50 per GB - data ingested", "GB", "0.5", 2),
                _sku("TFJV5QKW9BR9F5C5", "$0.30 per metric-month", "Metrics", "0.3", 1),
            )),
        ),
        55,
    ),
    _Provider(
        "Microsoft", "Microsoft", "/providers/Microsoft.Billing/billingAccounts/73914052", "Example Corp",
        (("eastus", "East US"), ("westeurope", "West Europe")),
        (
            _Service("Virtual Machines", "Compute",
                     "/subscriptions/{account}/resourcegroups/{env}/providers/microsoft.compute/virtualmachines/vm-", (
                _sku("DZH318Z0BQ4L", "D4s v5", "Hours", "0.192", 1),
                _sku("DZH318Z0BP04", "E8s v5", "Hours", "0.504", 1),
            )),
            _Service("Storage Accounts", "Storage",
                     "/subscriptions/{account}/resourcegroups/{env}/providers/microsoft.storage/storageaccounts/st", (
                _sku("DZH318Z0BNVX", "Hot LRS Data Stored", "GB/Month", "0.0184", 40, "Storage account"),
                _sku("DZH318Z0BNW0", "Hot Write Operations", "10K", "0.055", 8, "Storage account"),
            )),
            _Service("Azure SQL Database", "Databases",
                     "/subscriptions/{account}/resourcegroups/{env}/providers/microsoft.sql/servers/sql-", (
                _sku("DZH318Z0BQ5S", "General Purpose - Compute Gen5 - vCore", "Hours", "0.2522", 4),
            )),
            _Service("Azure Kubernetes Service", "Compute",
                     "/subscriptions/{account}/resourcegroups/{env}/providers/microsoft.containerservice/managedclusters/aks-", (
                _sku("DZH318Z0BQRM", "Standard Uptime SLA", "Hours", "0.1", 1),
            )),
            _Service("Bandwidth", "Networking",
                     "/subscriptions/{account}/resourcegroups/{env}/providers/microsoft.network/publicipaddresses/pip-", (
                _sku("DZH318Z0BNVR", "Standard Data Transfer Out", "GB", "0.087", 15),
            )),
        ),
        25,
    ),
    _Provider(
        "Google Cloud", "Google", "01A2B3-C4D5E6-F7A8B9", "Example Corp",
        (("us-central1", "Iowa"), ("europe-west4", "Netherlands")),
        (
            _Service("Compute Engine", "Compute", "//compute.googleapis.com/projects/{account}/zones/{region}-a/instances/gce-", (
                _sku("CF4E-A0C7-E3BF", "N2 Instance Core running in Americas", "Hours", "0.031611", 8),
                _sku("BB77-5FDA-569E", "N2 Instance Ram running in Americas", "GiBy.h", "0.004237", 32),
            )),
            _Service("Cloud Storage", "Storage", "//storage.googleapis.com/projects/_/buckets/", (
                _sku("E5F0-6A5D-7BAD", "Standard Storage US Multi-region", "GiBy.mo", "0.026", 80, "bucket"),
            )),
            _Service("BigQuery", "Analytics", "//bigquery.googleapis.com/projects/{account}/datasets/", (
                _sku("3362-E469-6BEF", "Analysis", "TiBy", "6.25", 1),
                _sku("9D6E-1A71-3F2C", "Active Logical Storage", "GiBy.mo", "0.02", 90),
            )),
            _Service("Cloud SQL", "Databases", "//cloudsql.googleapis.com/projects/{account}/instances/sql-", (
                _sku("9C2E-AB1E-3F9F", "Cloud SQL for PostgreSQL: Zonal - vCPU", "Hours", "0.0413", 4),
            )),
            _Service("Vertex AI", "AI and Machine Learning", "//aiplatform.googleapis.com/projects/{account}/locations/{region}/endpoints/", (
                _sku("FDD1-8AB5-4CB2", "Gemini 1.5 Flash Input Characters", "Count", "0.00000001875", 5000000),
                _sku("A253-E4B9-0D60", "Gemini 1.5 Flash Output Characters", "Count", "0.000000075", 900000),
            )),
        ),
        20,
    ),
)

#: Sub-accounts (AWS accounts, Azure subscriptions, GCP projects): one per business unit and
#: provider, plus shared ones whose costs are mostly untagged.
_SHARED_SUBACCOUNTS = ("shared-services", "security-tooling", "sandbox")


class _SkuPlan:
    """A SKU's CSV fields, quoted once."""

    def __init__(self, provider: _Provider, sku: _Sku) -> None:
        self.sku_id = _quote(sku.sku_id)
        self.sku_price_id = _quote(f"{sku.sku_id}.{provider.name[:3].upper()}.STD")
        self.description = _quote(sku.description)
        self.unit = _quote(sku.unit)
        self.unit_price = sku.unit_price
        self.price = _quote(f"{sku.unit_price:f}")
        self.resource_type = _quote(sku.resource_type) if sku.resource_type else "NULL"
        self.quantity_max = sku.quantity_max * 1_000_000 + 1


class _ServicePlan:
    def __init__(self, provider: _Provider, service: _Service) -> None:
        self.name = _quote(service.name)
        self.raw_name = service.name
        self.category = _quote(service.category)
        self.resource_prefix = service.resource_prefix
        self.skus = tuple(_SkuPlan(provider, sku) for sku in service.skus)


class _ProviderPlan:
    """A provider's CSV fields, quoted once, and its sub-accounts."""

    def __init__(self, provider: _Provider, accounts: dict) -> None:
        self.name = _quote(provider.name)
        self.issuer = _quote(provider.issuer)
        self.account_id = _quote(provider.billing_account_id)
        self.account_name = _quote(provider.billing_account_name)
        self.regions = provider.regions
        self.services = tuple(_ServicePlan(provider, s) for s in provider.services)
        own = [(bu, pair) for bu, pair in accounts.items() if bu is not None]
        self.accounts = {bu: (_quote(i), _quote(n), n) for bu, (i, n) in own}
        self.shared = tuple((_quote(i), _quote(n), n) for i, n in accounts[None])
        # The id as it appears inside resource ids (an Azure subscription's GUID, not its path).
        self.resource_accounts = {n: i.rsplit("/", 1)[-1] for _, (i, n) in own}
        self.resource_accounts.update({n: i.rsplit("/", 1)[-1] for i, n in accounts[None]})


@dataclass
class GeneratedFile:
    """What ``write_focus_file`` wrote: exact Decimal totals to check an import against.

    ``billed_cost_by_business_unit`` is keyed by the ``business_unit`` tag value, ``None`` for rows
    without one; every row is in billing period ``period``.
    """

    path: Path
    rows: int
    period: str
    seed: int
    gzip: bool
    total_billed_cost: Decimal = Decimal(0)
    billed_cost_by_business_unit: dict[str | None, Decimal] = field(default_factory=dict)
    charge_categories: Counter = field(default_factory=Counter)
    negative_rows: int = 0
    currency: str = _CURRENCY

    @property
    def untagged_billed_cost(self) -> Decimal:
        return self.billed_cost_by_business_unit.get(None, Decimal(0))


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _subaccounts(provider: _Provider, rng: random.Random) -> dict[str | None, tuple[str, str]]:
    """(SubAccountId, SubAccountName) per business unit; ``None`` → the list of shared ones."""
    def account_id(name: str) -> str:
        if provider.name == "AWS":
            return f"{rng.randrange(10**11, 10**12)}"
        if provider.name == "Microsoft":
            return f"/subscriptions/{uuid.UUID(int=rng.getrandbits(128), version=4)}"
        return f"{name}-{rng.randrange(1000, 10000)}"

    suffix = {"AWS": "prod", "Microsoft": "prod-sub", "Google Cloud": "prod"}[provider.name]
    accounts: dict = {bu: (account_id(f"{bu}-{suffix}"), f"{bu}-{suffix}") for bu in BUSINESS_UNITS}
    accounts[None] = [(account_id(name), name) for name in _SHARED_SUBACCOUNTS]
    return accounts


def write_focus_file(path: str | Path, *, rows: int, period: str, seed: int = 42, gzip: bool = False) -> GeneratedFile:
    """Write a FOCUS 1.0 CSV of ``rows`` rows for billing period ``period`` (``YYYY-MM``).

    Args:
        path: the file to write (replaced if it exists); its name is not changed for ``gzip``.
        rows: number of data rows (≥ 0).
        period: the billing month, e.g. ``"2026-10"``: ``BillingPeriodStart`` is its first day at
            midnight, ``BillingPeriodEnd`` the next month's (exclusive); charge periods are hours
            within it.
        seed: the seed of the ``random.Random`` that draws every value.
        gzip: compress with gzip (deterministic: no time or name in the header).

    Returns:
        A ``GeneratedFile`` with the exact sum of ``BilledCost`` (USD, 11 decimal places per row),
        per ``business_unit``, and the count of rows per ``ChargeCategory``.

    Raises:
        ValueError: ``rows`` is negative. ``chargeback.periods.PeriodError``: a bad ``period``.
    """
    if rows < 0:
        raise ValueError("rows must not be negative")
    billing = BillingPeriod.month(period)
    rng = random.Random(seed)
    path = Path(path)
    result = GeneratedFile(path=path, rows=rows, period=billing.label, seed=seed, gzip=gzip)
    by_bu = result.billed_cost_by_business_unit

    period_start = _quote(f"{billing.start:%Y-%m-%d} 00:00:00")
    period_end = _quote(f"{billing.end:%Y-%m-%d} 00:00:00")
    hours = int((billing.end - billing.start).days) * 24
    first_hour = dt.datetime.combine(billing.start, dt.time())
    # hour_text[h] is the start of the h-th hour of the month; the last one is the next month's midnight.
    hour_text = [_quote(f"{first_hour + dt.timedelta(hours=h):%Y-%m-%d %H:%M:%S}") for h in range(hours + 1)]
    null = "NULL"
    q = _quote
    plans = [_ProviderPlan(p, _subaccounts(p, rng)) for p in _PROVIDERS]
    provider_cum = list(accumulate(p.weight for p in _PROVIDERS))
    bu_cum = list(accumulate(_BU_WEIGHTS))
    currency, usage, one_time, usage_based = q(_CURRENCY), q("Usage"), q("One-Time"), q("Usage-Based")
    standard, other = q("Standard"), q("Other")
    bu_tags = {
        (bu, env, app): q(f'{{"application": "{bu}-{app}", "environment": "{env}", "business_unit": "{bu}"}}')
        for bu in BUSINESS_UNITS for env in set(_ENVIRONMENTS) for app in _APPLICATIONS
    }
    other_tags = {env: q(f'{{"environment": "{env}", "owner": "unknown"}}') for env in set(_ENVIRONMENTS)}
    random_, randrange, choice, getrandbits = rng.random, rng.randrange, rng.choice, rng.getrandbits
    month, number = f"{billing.start:%Y%m}", 0
    if rows > 0xFFFFFF:
        raise ValueError("rows must be at most 16,777,215 (the row number is six hex digits of the Id)")

    raw = path.open("wb")
    try:
        binary = gzip_module.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if gzip else raw
        out = io.TextIOWrapper(binary, encoding="utf-8", newline="", write_through=False)
        out.write(",".join(q(c) for c in FOCUS_COLUMNS) + "\n")
        write = out.write
        for _ in range(rows):
            plan = plans[bisect(provider_cum, random_() * provider_cum[-1])]
            service = choice(plan.services)
            sku = choice(service.skus)
            region_id, region_name = choice(plan.regions)
            hour = randrange(hours)

            draw = random_()
            if draw < _SHARE_UNTAGGED + _SHARE_TAGS_WITHOUT_BU:
                bu = None
                tags = null if draw < _SHARE_UNTAGGED else other_tags[choice(_ENVIRONMENTS)]
                sub_id, sub_name, sub_raw = choice(plan.shared)
            else:
                bu = BUSINESS_UNITS[bisect(bu_cum, random_() * bu_cum[-1])]
                tags = bu_tags[(bu, choice(_ENVIRONMENTS), choice(_APPLICATIONS))]
                sub_id, sub_name, sub_raw = plan.accounts[bu]

            kind = random_()
            bits = f"{getrandbits(128):032x}"
            # A version-4 UUID look-alike, drawn from the seeded generator, whose last group is the
            # billing month and the row's number: distinct for every row of every month, so the
            # same seed for two months never makes the second "already imported".
            record_id = f'"{bits[:8]}-{bits[8:12]}-4{bits[13:16]}-a{bits[17:20]}-{month}{number:06x}"'
            number += 1
            resource_n = randrange(40)
            if kind < _SHARE_CREDIT + _SHARE_ADJUSTMENT:
                # A credit (promotional) or an adjustment (a refund): negative, no quantity.
                amount = -(Decimal(randrange(1, 200_000)).scaleb(-4)).quantize(_COST_PLACES)
                category = "Credit" if kind < _SHARE_CREDIT else "Adjustment"
                description = ("Promotional credits, credit applied to the account" if category == "Credit"
                               else f"Refund: service level credit for {service.raw_name}")
                cost = str(amount)
                values = (
                    null, cost, plan.account_id, plan.account_name, currency, period_end, period_start,
                    q(category), null, q(description), one_time, hour_text[hour + 1], hour_text[hour],
                    null, null, null, null, null, null, null, cost, null, cost, plan.issuer, cost, null,
                    other, null, null, plan.name, plan.issuer, q(region_id), q(region_name), null, null,
                    null, service.category, record_id, service.name, sku.sku_id, null, sub_id, sub_name, tags,
                )
            else:
                quantity = Decimal(randrange(1, sku.quantity_max)).scaleb(-6)
                amount = (quantity * sku.unit_price).quantize(_COST_PLACES, rounding=ROUND_HALF_UP)
                category = "Usage"
                cost = str(amount)
                name = f"{sub_raw}-{resource_n:03d}"
                resource = q(service.resource_prefix.format(
                    region=region_id, account=plan.resource_accounts[sub_raw], env=sub_raw) + name)
                values = (
                    null, cost, plan.account_id, plan.account_name, currency, period_end, period_start,
                    usage, null, sku.description, usage_based, hour_text[hour + 1], hour_text[hour],
                    null, null, null, null, null, str(quantity.quantize(_QUANTITY_PLACES)), sku.unit, cost,
                    sku.price, cost, plan.issuer, cost, sku.price, standard,
                    str(quantity.quantize(_COST_PLACES)), sku.unit, plan.name, plan.issuer, q(region_id),
                    q(region_name), resource, q(name), sku.resource_type, service.category, record_id,
                    service.name, sku.sku_id, sku.sku_price_id, sub_id, sub_name, tags,
                )
            write(",".join(values))
            write("\n")
            result.total_billed_cost += amount
            by_bu[bu] = by_bu.get(bu, Decimal(0)) + amount
            result.charge_categories[category] += 1
            if amount < 0:
                result.negative_rows += 1
        out.flush()
        out.detach()
        if gzip:
            binary.close()
    finally:
        raw.close()
    return result
