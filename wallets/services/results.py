"""What a wallet service's idempotency key stores and replays: a ledger entry, hold or usage event.

The wallet services' keys are scoped by team (``team:<pk>``). The record keeps the result's type,
pk and the JSON the API answers with; a replay reloads the result and marks it ``replayed``
(the API then answers ``Idempotent-Replayed: true``). The claim itself is
``billing_site.idempotency``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from billing_site.idempotency import idempotent_run
from billing_site.models import IdempotencyRecord
from wallets.models import Hold, LedgerEntry, UsageEvent

Result = TypeVar("Result", LedgerEntry, Hold, UsageEvent)

_RESULT_MODELS: dict[str, type] = {"ledger_entry": LedgerEntry, "hold": Hold, "usage_event": UsageEvent}


def result_replay(record: IdempotencyRecord) -> LedgerEntry | Hold | UsageEvent:
    """The first result of a replayed key, marked ``replayed``."""
    result = _RESULT_MODELS[record.result_type].objects.get(pk=record.result_id)
    result.replayed = True
    return result


def result_response(result: Any) -> tuple[str, dict]:
    """The result type and the JSON the API answers with (and replays): decimal strings, ISO times."""
    if isinstance(result, LedgerEntry):
        return "ledger_entry", {
            "object": "ledger_entry", "id": result.pk, "wallet": result.wallet_id, "entry_type": result.entry_type,
            "amount": format(result.amount, "f"), "currency": result.currency,
            "balance_after": format(result.balance_after, "f"), "reserved_after": format(result.reserved_after, "f"),
            "created_at": result.created_at.isoformat(),
        }
    if isinstance(result, Hold):
        return "hold", {
            "object": "hold", "id": result.pk, "wallet": result.wallet_id, "amount": str(result.amount),
            "captured_amount": str(result.captured_amount), "released_amount": str(result.released_amount),
            "status": result.status,
        }
    if isinstance(result, UsageEvent):
        return "usage_event", {
            "object": "usage_event", "id": result.pk, "status": result.status, "total": str(result.total),
            "currency": result.currency, "ledger_entry": result.ledger_entry_id,
            "rejection_code": result.rejection_code, "rejection_reason": result.rejection_reason,
        }
    raise TypeError(f"no idempotent response shape for {type(result).__name__}")


def team_idempotent_run(*, team_id: int, idempotency_key: str, operation: str, params: Mapping[str, Any],
                        body: Callable[[], Result],
                        extra_response: Callable[[], dict] | None = None) -> tuple[Result, IdempotencyRecord, bool]:
    """Run ``body()`` once per (team, key) inside the caller's transaction; replays return the first result.

    ``body`` locks what it needs and saves its result (a ledger entry, hold or usage event);
    ``extra_response()`` adds fields to the stored JSON. Returns ``(result, record, replayed)``,
    the result's ``replayed`` set. Raises ``InvalidRequest`` (bad key), ``IdempotencyError``.
    """

    def response(result: Result) -> tuple[str, str, dict]:
        result.replayed = False
        result_type, data = result_response(result)
        if extra_response is not None:
            data.update(extra_response())
        return result_type, str(result.pk), data

    return idempotent_run(scope=f"team:{team_id}", idempotency_key=idempotency_key, operation=operation,
                          params=params, body=body, response=response, replay=result_replay)
