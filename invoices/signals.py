"""Signals invoices send for the apps after them (which invoices never import).

* ``invoices_issued``: invoices were issued (numbered and frozen); keyword ``invoice_ids`` (a list of
  ``Invoice`` pks). Sent inside the issuing transaction by ``invoices.services.lifecycle.invoice_issue``
  (one id) and by the subscriptions' bulk issue (``subscriptions.services.invoicing.invoices_write``,
  every invoice it wrote). A receiver runs in that transaction: it may only defer work (a Procrastinate
  job commits with the invoices or not at all), never call a network service, and should read in
  bulk. The ``payments`` app queues automatic collection there (``payments.receivers``).
* ``invoices_paid``: invoices were marked paid, by any door (a card payment, finance by hand, the
  API); keyword ``invoice_ids``. Sent inside the transaction of
  ``invoices.services.lifecycle.invoice_mark_paid``, with the same rules. The ``payments`` app ends
  the invoice's dunning there (a job: the subscription active again, the wallets unfrozen).
"""

from __future__ import annotations

from django.dispatch import Signal

invoices_issued = Signal()
invoices_paid = Signal()
