"""The subscription services: every write of plans and subscriptions, one module per job.

* :mod:`.plans`: ``plan_create``, ``plan_update``, ``plan_archive``, ``plan_new_version``.
* :mod:`.lifecycle`: ``subscription_create``, ``subscription_cancel``, ``subscription_change_plan``,
  ``subscription_trial_end``, ``subscription_trial_extend``, ``proration_preview``.
* :mod:`.status`: the one check of a status move, ``subscription_check_transition``;
  ``subscription_transition`` (past due, unpaid, active again) and ``subscriptions_mark_past_due``.
* :mod:`.renewal`: ``subscription_renew`` (one subscription) and ``subscriptions_renew_due`` (the
  ``renew_subscriptions`` command, batched), idempotent per subscription and period.
* :mod:`.invoicing`: the invoice of a period (fee in advance, overage in arrears, prorations) on the
  ``invoices`` app's models, and the wallet payment of prepaid teams.

Reads live in ``subscriptions.selectors`` (usage per meter) and ``subscriptions.preview`` (the
upcoming invoice).
"""
