"""``wallet_charge``: a debit of a wallet, done by one call of the SQL function ``wallets_charge``.

The function (installed by wallets migration 0006) claims the idempotency key, locks the wallet,
checks its status and the team's floor, spends granted credit first, inserts the ``charge`` ledger
entry, stores the wallet's totals and the key's result, in one statement: one round trip, the
charge's whole cost on the hot path. Its rules are those of the posting helpers
(``wallets.services.posting``); the equivalence test (tests/wallets/test_charge_function.py)
checks the two agree.
"""

from __future__ import annotations

import contextlib
import functools
from decimal import Decimal

from django.db import DatabaseError, connection, transaction
from django.db.backends.postgresql.base import ServerBindingCursor
from django.utils import timezone

from billing_site.idempotency import idempotency_key_check, idempotency_record_claimed, request_fingerprint
from billing_site.money import METERED_BOUND, AmountOutOfRange
from teams.models import BillingSettings
from teams.selectors import billing_settings_get
from wallets.models import LedgerEntry, Wallet
from webhooks.services import event_record

from .amounts import ZERO, amount_positive
from .notifications import low_balance_warn
from .posting import insufficient_funds_error, wallet_frozen_error
from .results import result_replay

#: ``wallets_charge(...)``, the SQL function of migration 0006: see its docstring for the steps.
_CHARGE_FUNCTION_SQL = f"SELECT * FROM wallets_charge({', '.join(['%s'] * 18)})"
#: SQLSTATEs the function raises (RAISE … USING ERRCODE; DETAIL carries the figure named).
SQLSTATE_INSUFFICIENT_FUNDS = "WL402"  # DETAIL: the available credit
SQLSTATE_NO_WALLET = "WL404"
SQLSTATE_WALLET_NOT_ACTIVE = "WL409"  # DETAIL: the wallet's status
#: PostgreSQL's numeric_value_out_of_range: the balance would leave numeric(30, 12).
SQLSTATE_OUT_OF_RANGE = "22003"


class _PreparedCursor(ServerBindingCursor):
    """A cursor binding its parameters on the server, each statement prepared once per connection.

    The charge is the one statement of the hot path: prepared, a call sends only its parameters
    (no SQL text built and quoted in Python, nothing parsed or planned again by the server).
    Django keeps prepared statements off for every other query (``prepare_threshold`` is ``None``,
    for connection poolers in transaction mode; none sits in front of this database).
    """

    def execute(self, query, params=None, *, prepare=None, binary=None):
        return super().execute(query, params, prepare=True, binary=binary)

    def _send_query_prepared(self, name, pgq, *, binary=None):
        # psycopg records the statement it sent (what Django's query log shows) only when it is not
        # prepared; keep it for a prepared one too.
        self._query = pgq
        super()._send_query_prepared(name, pgq, binary=binary)


#: A threshold no statement reaches: psycopg then prepares only what is executed with prepare=True.
_NEVER_AUTOMATICALLY = 2**31


def _charge_cursor():
    """Django's cursor wrapper (its error mapping and query log) around a :class:`_PreparedCursor`."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # psycopg prepares nothing while the threshold is None, not even on request. Django's other
        # cursors bind on the client and are never prepared whatever the threshold: the statements
        # prepared on this connection are those asked for with prepare=True, the charge's alone.
        raw.prepare_threshold = _NEVER_AUTOMATICALLY
    cursor = _PreparedCursor(raw)
    return connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)


#: The ledger entry's columns in the model's field order, for the positional (cheap) constructor.
_ENTRY_COLUMNS = tuple(field.attname for field in LedgerEntry._meta.concrete_fields)


def charge_params(*, wallet: Wallet, amount: Decimal, feature_key: str, description: str, reference_type: str,
                  reference_id: object, metadata: dict) -> dict:
    """What a ``wallet_charge`` key is bound to (its fingerprint's parameters, ``reference_id`` as given)."""
    return {"wallet": wallet.pk, "amount": amount, "feature_key": feature_key, "description": description,
            "reference_type": reference_type, "reference_id": reference_id, "metadata": metadata}


@functools.cache
def billing_defaults() -> tuple:
    """What a team without a ``BillingSettings`` row is charged under: the model's field defaults."""
    field = BillingSettings._meta.get_field
    return (str(field("billing_model").get_default()), field("credit_limit").get_default(),
            str(field("warning_threshold_type").get_default()), field("warning_threshold_value").get_default(),
            field("block_on_zero_balance").get_default())


def wallet_charge(*, wallet: Wallet, amount: Decimal, idempotency_key: str, feature_key: str = "",
                  description: str = "", reference_type: str = "", reference_id: str = "", created_by=None,
                  metadata: dict | None = None) -> LedgerEntry:
    """Debit ``amount`` (> 0, 12 dp, wallet currency) from ``wallet`` with one ``charge`` entry.

    Checks available credit against the team's floor (0 with block on zero balance, −credit limit
    for postpaid, none for unlimited or without block); spends granted credit first; may send the
    low-balance e-mail after commit. Raises ``InvalidAmount``, ``AmountOutOfRange`` (the balance
    would pass ``money.METERED_BOUND`` below zero), ``InvalidRequest`` (bad key),
    ``WalletFrozen``, ``InsufficientFunds`` (nothing moved, nothing recorded), ``IdempotencyError``,
    ``Wallet.DoesNotExist``.

    One call of the SQL function ``wallets_charge``: in autocommit mode the statement is the
    transaction; inside a caller's transaction it runs in a savepoint, so a refusal leaves the
    caller's transaction usable. The function raises with its own SQLSTATEs; they become the
    errors above, with the messages of the posting helpers.
    """
    amount = amount_positive(amount, "amount")
    idempotency_key = idempotency_key_check(idempotency_key)
    metadata = metadata or {}
    params = charge_params(wallet=wallet, amount=amount, feature_key=feature_key, description=description,
                           reference_type=reference_type, reference_id=reference_id, metadata=metadata)
    scope, fingerprint, now = f"team:{wallet.team_id}", request_fingerprint("wallet_charge", params), timezone.now()
    description, reference_id = description[:500], str(reference_id)  # as posting stores them
    args = [
        wallet.pk, scope, idempotency_key, fingerprint, amount, feature_key, description, reference_type,
        reference_id, getattr(created_by, "pk", None),
        LedgerEntry._meta.get_field("metadata").get_db_prep_save(metadata, connection), now, now.isoformat(),
        *billing_defaults(),
    ]
    try:
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            with _charge_cursor() as cursor:
                cursor.execute(_CHARGE_FUNCTION_SQL, args)
                replayed, entry_id, before, after, reserved, crossed, notify = cursor.fetchone()
    except DatabaseError as exc:
        sqlstate = getattr(exc.__cause__, "sqlstate", None)
        if sqlstate == SQLSTATE_INSUFFICIENT_FUNDS:
            available = Decimal(exc.__cause__.diag.message_detail)
            raise _refused(insufficient_funds_error(wallet.pk, available, amount, wallet.currency), params) from None
        if sqlstate == SQLSTATE_WALLET_NOT_ACTIVE:
            raise _refused(wallet_frozen_error(wallet.pk, exc.__cause__.diag.message_detail), params) from None
        if sqlstate == SQLSTATE_NO_WALLET:
            raise Wallet.DoesNotExist(f"Wallet {wallet.pk} does not exist.") from None
        if sqlstate == SQLSTATE_OUT_OF_RANGE:
            raise AmountOutOfRange(f"amount {amount} would take the balance of wallet {wallet.pk} beyond the "
                                   f"largest figure stored (below {METERED_BOUND:,} in absolute value)",
                                   param="amount") from None
        raise
    if replayed:
        return result_replay(idempotency_record_claimed(scope=scope, key=idempotency_key, fingerprint=fingerprint))
    # The entry as the database holds it, built as Django builds a row it reads (positionally).
    values = {
        "id": entry_id, "wallet_id": wallet.pk, "entry_type": LedgerEntry.EntryType.CHARGE, "amount": -amount,
        "reserved_delta": ZERO, "balance_before": before, "balance_after": after, "reserved_before": reserved,
        "reserved_after": reserved, "currency": wallet.currency, "idempotency_key": idempotency_key,
        "reference_type": reference_type, "reference_id": reference_id, "feature_key": feature_key,
        "description": description, "created_by_id": getattr(created_by, "pk", None), "created_at": now,
        "metadata": metadata,
    }
    entry = LedgerEntry.from_db(connection.alias, None, [values[column] for column in _ENTRY_COLUMNS])
    if created_by is not None:
        entry.created_by = created_by  # the caller's user, cached on the entry as before
    entry.replayed = False
    if crossed is not None and notify:  # rare: read the team and its addresses for the e-mail
        current = _wallet_as_left(wallet.pk, after, reserved)
        low_balance_warn(current, billing_settings_get(team=current.team), crossed)  # and its webhook event
    elif crossed is not None:  # the wallet is read only if a webhook endpoint wants the event
        event_record("wallet.low_balance", lambda: _wallet_as_left(wallet.pk, after, reserved), team=wallet.team_id)
    if before > 0 >= after:
        event_record("wallet.depleted", lambda: _wallet_as_left(wallet.pk, after, reserved), team=wallet.team_id)
    return entry


def _wallet_as_left(wallet_id: int, balance: Decimal, reserved: Decimal) -> Wallet:
    """The wallet with the figures this charge left, not those of a charge committed since."""
    current = Wallet.objects.select_related("team__billing_settings", "user").get(pk=wallet_id)
    current.balance, current.reserved = balance, reserved
    return current


def _refused(error: Exception, params: dict) -> Exception:
    """Record the ``charge.refused`` webhook event of a refused charge and hand ``error`` back.

    Outside a transaction the event commits at once; inside one it lives or dies with it (a
    refused usage event is committed as rejected, and so is its event).
    """
    wallet = Wallet.objects.select_related("team").get(pk=params["wallet"])
    event_record("charge.refused", {
        "wallet": wallet, "amount": params["amount"], "currency": wallet.currency, "feature_key": params["feature_key"],
        "reference_type": params["reference_type"], "reference_id": str(params["reference_id"]),
        "error": {"code": error.code, "message": error.message, "param": error.param},
    }, team=wallet.team_id)
    return error
