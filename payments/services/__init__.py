"""Payment writes, one module per job; callers import from the module that does the job.

* ``customers``: the team's one Stripe customer (``customer_ensure``);
* ``payment_methods``: list, add through a SetupIntent, set the default, detach;
* ``collection``: charging an invoice off-session (``invoice_collect``, ``invoice_payment_attempt``),
  and applying a PaymentIntent's outcome, whoever reports it (``payment_intent_apply``: the
  synchronous confirmation, a webhook, a re-read);
* ``top_ups``: a wallet top-up paid by card, credited once the payment succeeded;
* ``refunds``: a credit note on a paid invoice, refunded through Stripe.

The network call to Stripe is never made inside a transaction that holds a lock, except where it
says so (``customer_ensure``: once per team, on the billing settings row only).
"""
