"""The queues, one per kind of work, so a slow backlog of one kind never delays another.

A worker takes every queue unless started with ``--queues`` (``manage.py procrastinate worker
--queues=pdf``): a machine can be given to PDFs alone, another to webhooks (docs/jobs.md).
"""

#: Billing-run commits and issuing: few, long, one per period at a time (locks).
BILLING = "billing"
#: PDF rendering and zips of PDFs: many, CPU-bound.
PDF = "pdf"
#: FOCUS file preview and import.
IMPORTS = "imports"
#: E-mails, sent after the transaction that causes them commits.
MAIL = "mail"
#: Outbound webhook deliveries.
WEBHOOKS = "webhooks"
#: Periodic housekeeping (overdue marking, grant expiry, purges, stalled-job recovery).
PERIODIC = "periodic"

ALL = (BILLING, PDF, IMPORTS, MAIL, WEBHOOKS, PERIODIC)
