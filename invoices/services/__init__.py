"""Invoice writes, one module per job; callers import from the module that does the job.

* ``generation``: draft invoices from a committed allocation run, and one team's (or user's)
  invoice or prepaid statement for a period;
* ``billing_run``: the month-end billing run (allocate, write the drafts, store their PDFs), the
  one service behind the ``billing_run`` command, the admin's "Run billing for a period…" and the
  API's ``POST /api/v1/billing-runs/``;
* ``lifecycle``: issue, send, pay, overdue, cancel (``Invoice.TRANSITIONS``, one checker); the
  dispute flag (``invoice_mark_disputed``);
* ``credit_notes``: credit notes on issued invoices;
* ``pdf_storage``: storing an invoice's or a credit note's PDF (``invoices.pdf`` renders the bytes),
  and zips of many PDFs;
* ``jobs``: issuing and zips requested from the admin, queued as background jobs (``invoices.tasks``).
"""
