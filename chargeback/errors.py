"""Errors of the chargeback core, each with a message a finance user can act on.

All are ``ValueError`` subclasses, so a caller that only knows "bad input" can still catch them;
the API and the commands map them to a 400 response or a non-zero exit.
"""

from __future__ import annotations


class PriceNotFound(ValueError):
    """No catalog price (neither the team's override nor the global price) is valid for an item."""


class InvalidUsage(ValueError):
    """A usage record that cannot be recorded: negative quantity, bad currency, naive time…"""


class IdempotencyError(ValueError):
    """An idempotency key was replayed with parameters that differ from the recorded usage."""


class AllocationError(ValueError):
    """An allocation run that cannot be computed or committed."""


class NothingToAllocate(AllocationError):
    """The billing period has no usage records at all."""


class RuleConfigurationError(AllocationError):
    """An allocation rule whose configuration cannot be applied (fixed split not 100 %, …)."""


class MixedCurrencyError(AllocationError):
    """The period's usage is in more than one currency; a run ties out in one currency."""


class StaleAllocationRun(AllocationError):
    """The period's usage changed after the draft run was computed: it must be computed again."""
