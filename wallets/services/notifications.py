"""The low-balance warning: one e-mail per crossing of the team's threshold, sent after commit.

A debit that takes the balance from at or above the warning threshold to below it, while the
wallet has not warned yet, sets ``low_balance_warned`` and mails the team's notify addresses (if it
wants them), from the ``mail`` queue once the charge commits. A credit that lifts the balance back to the threshold re-arms the warning. The
threshold is the team's (``BillingSettings.warning_threshold``: absolute, or a percent of the
wallet's last top-up).
"""

from __future__ import annotations

from decimal import Decimal

from jobs.tasks import mail_queue
from teams.models import BillingSettings
from wallets.models import Wallet
from webhooks.services import event_record


def low_balance_after_debit(wallet: Wallet, billing: BillingSettings, balance_before: Decimal) -> None:
    """One warning per crossing: from at/above the threshold to below it, while not yet warned."""
    threshold = billing.warning_threshold(wallet.last_top_up_amount)
    if threshold is None or wallet.low_balance_warned:
        return
    if balance_before >= threshold > wallet.balance:
        wallet.low_balance_warned = True
        low_balance_warn(wallet, billing, threshold)


def low_balance_after_credit(wallet: Wallet, billing: BillingSettings) -> None:
    """Re-arm the warning once a credit lifts the balance back to the threshold."""
    if not wallet.low_balance_warned:
        return
    threshold = billing.warning_threshold(wallet.last_top_up_amount)
    if threshold is None or wallet.balance >= threshold:
        wallet.low_balance_warned = False


def low_balance_warn(wallet: Wallet, billing: BillingSettings, threshold: Decimal) -> None:
    """Mail the team's notify addresses (if it wants them) that ``wallet`` fell below ``threshold``.

    The e-mail states ``wallet``'s balance and reserved amount as they are on the instance; the
    ``wallet.low_balance`` webhook event is recorded whether or not the team wants the e-mail.
    """
    event_record("wallet.low_balance", wallet, team=wallet.team_id)
    recipients = billing.notify_email_list
    if billing.notify_on_warning and recipients:
        subject, body = _low_balance_message(wallet, threshold)
        # A job of the ``mail`` queue, in the charge's transaction: sent only if the charge
        # commits, and a mail failure (retried by the job) never undoes a committed charge.
        mail_queue(subject=subject, body=body, to=recipients)


def _low_balance_message(wallet: Wallet, threshold: Decimal) -> tuple[str, str]:
    owner = f"{wallet.team.name} / {wallet.user}" if wallet.user_id else wallet.team.name
    subject = f"Low credit balance: {owner}"
    body = (
        f"The prepaid credit balance of {owner} fell below the warning threshold.\n\n"
        f"Balance:   {wallet.balance.normalize():f} {wallet.currency}\n"
        f"Reserved:  {wallet.reserved.normalize():f} {wallet.currency}\n"
        f"Threshold: {threshold.normalize():f} {wallet.currency}\n\n"
        f"Top up the wallet to keep services running."
    )
    return subject, body


def wallet_depleted_check(wallet: Wallet, balance_before: Decimal) -> None:
    """Record the ``wallet.depleted`` webhook event when a debit took the balance from above zero to
    zero or below (``wallet`` as it is after the debit)."""
    if balance_before > 0 >= wallet.balance:
        event_record("wallet.depleted", wallet, team=wallet.team_id)
