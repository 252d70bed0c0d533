"""Every write of the wallets app: the only way money moves in or out of a wallet.

One module per job; callers import from the module itself (this package re-exports nothing):

- ``amounts``: the amounts a wallet service accepts (Decimal, at most 12 decimal places).
- ``results``: what a wallet service's idempotency key stores and replays.
- ``notifications``: the low-balance warning and its e-mail.
- ``wallets``: opening, locking, freezing and unfreezing a wallet.
- ``posting``: posting ledger entries under the wallet's lock: top-up, grant, refund,
  adjustment, invoice settlement, grant expiry.
- ``charges``: ``wallet_charge``, one call of the SQL function ``wallets_charge``.
- ``holds``: holds, their capture and release, and the release of expired holds.
- ``usage_events``: quotes and usage-event charges (priced from the catalog).

Each money-moving service runs in one database transaction that

1. claims the idempotency key (``billing_site.idempotency``: the ``IdempotencyRecord`` is inserted
   first; its unique constraint on ``(scope, key)`` makes concurrent requests with one key wait for
   the first and then replay its result, or fail with ``IdempotencyError`` if their parameters
   differ; Stripe's semantics, https://docs.stripe.com/api/idempotent_requests),
2. locks the wallet row (``SELECT … FOR UPDATE``) and re-reads it under the lock,
3. validates (status, available credit),
4. writes the ledger entry with the balance before and after, computed from the locked row,
5. stores the new running totals on the wallet, and records the result on the idempotency record.

A failure in 2–5 rolls everything back, the idempotency record included, so a refused request
(insufficient funds, frozen wallet) can be retried with the same key once the cause is fixed. The
one exception is ``usage_event_charge``: its rejection is a recorded outcome (the rejected event is
committed, and a replay raises the same error again). The charge runs these steps inside the SQL
function ``wallets_charge``; every other service runs them through the ORM.

Amounts are positive Decimals with at most 12 decimal places (``billing_site.money``), in the
wallet's currency; floats are refused. All services are keyword-only.
"""
