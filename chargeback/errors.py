"""Errors of the chargeback core: :class:`ChargebackError` and its subclasses, each a ``BillingError``.

Each carries its ``code`` and HTTP status (``billing_site.errors`` has the table) and a message a
finance user can act on; the API maps them in one place, the admin and the commands show the
message. ``chargeback.periods.PeriodError`` (a period that is not whole months) is one too. The
idempotency conflict of a usage record is the shared ``billing_site.errors.IdempotencyError``.
"""

from __future__ import annotations

from billing_site.errors import BillingError


class ChargebackError(BillingError):
    """Base class: a chargeback operation that was refused. Nothing was written when it is raised."""

    code = "chargeback_error"
    http_status = 400


class PriceNotFound(ChargebackError, ValueError):
    """No catalog price (neither the team's override nor the global price) is valid for an item.

    The one error for a missing price, whoever prices (usage records, wallet charges, quotes).
    HTTP 422, ``price_not_found``. Also a ``ValueError``: the item and time asked for have no value
    in the catalog, and callers of the pricing functions may treat it as any bad value.
    """

    code = "price_not_found"
    http_status = 422


class InvalidUsage(ChargebackError):
    """A usage record that cannot be recorded: negative quantity, bad currency, naive time… HTTP 400."""

    code = "invalid_usage"
    http_status = 400


class UsageRecordVoid(ChargebackError):
    """The usage record was voided already; a void is final (record the usage again if it was right). HTTP 409."""

    code = "usage_record_void"
    http_status = 409


class AllocationError(ChargebackError):
    """An allocation run that cannot be computed or committed. HTTP 422."""

    code = "allocation_error"
    http_status = 422


class NothingToAllocate(AllocationError):
    """The billing period has no usage records at all. HTTP 422."""

    code = "nothing_to_allocate"
    http_status = 422


class RuleConfigurationError(AllocationError):
    """An allocation rule whose configuration cannot be applied (fixed split not 100 %, …). HTTP 422."""

    code = "rule_configuration_error"
    http_status = 422


class StaleAllocationRun(AllocationError):
    """The period's usage changed after the draft run was computed: it must be computed again. HTTP 409."""

    code = "stale_allocation_run"
    http_status = 409


class TeamMappingError(ChargebackError):
    """A team mapping that cannot be recorded: a tag without key, a value mapped from a later period already,
    an end before its start. ``param`` names the field. HTTP 400, ``invalid_team_mapping``."""

    code = "invalid_team_mapping"
    http_status = 400
