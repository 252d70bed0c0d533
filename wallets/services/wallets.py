"""Wallets themselves: opening one, locking it for a money movement, freezing and unfreezing it."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from billing_site.errors import InvalidRequest
from teams.models import Team, TeamMembership
from wallets.models import Wallet


def wallet_lock(wallet_id: int) -> Wallet:
    """Lock the wallet row (``SELECT … FOR UPDATE OF`` the wallet only) and re-read it.

    The team and its billing settings come in the same query, not locked. Must run inside a
    transaction. Every money movement locks exactly one wallet, so there is no lock order to keep.
    Raises ``Wallet.DoesNotExist``.
    """
    return (
        Wallet.objects.select_for_update(of=("self",))
        .select_related("team__billing_settings")
        .get(pk=wallet_id)
    )


def wallet_open(*, team: Team, user=None, currency: str | None = None) -> Wallet:
    """The live wallet of ``team`` (of ``user`` within it when given) in ``currency``, created if missing.

    ``currency`` defaults to the team's. A user's wallet needs the user to be a member of the team.
    Safe under concurrency: the partial unique constraints admit one live wallet; a loser of the
    race reads the winner's. Runs inside the caller's transaction when there is one (the usage-event
    charge and the invoice settlement open the wallet they post to). Raises :class:`InvalidRequest`
    for a user outside the team.
    """
    currency = (currency or team.currency).upper()
    if user is not None and not TeamMembership.objects.filter(team=team, user=user).exists():
        raise InvalidRequest(f"user {user} is not a member of team {team}", param="user")
    live = Wallet.objects.exclude(status=Wallet.Status.CLOSED).filter(team=team, user=user, currency=currency)
    wallet = live.first()
    if wallet is not None:
        return wallet
    try:
        with transaction.atomic():
            return Wallet.objects.create(team=team, user=user, currency=currency)
    except IntegrityError:
        return live.get()


def _status_set(wallet: Wallet, frm: str, to: str) -> Wallet:
    # Not durable: dunning freezes and unfreezes a team's wallets inside the transaction that
    # records the last failed retry, or the payment that arrives later.
    with transaction.atomic():
        locked = wallet_lock(wallet.pk)
        if locked.status == to:
            return locked
        if locked.status != frm:
            raise InvalidRequest(f"wallet {locked.pk} is {locked.status}; only a {frm} wallet can become {to}", param="status")
        locked.status = to
        locked.save(update_fields=["status", "updated_at"])
        return locked


def wallet_freeze(*, wallet: Wallet) -> Wallet:
    """Freeze an active wallet: charges, holds and captures are refused (credits and releases are not).

    Freezing a frozen wallet changes nothing. Runs inside the caller's transaction when there is one
    (``payments`` dunning). Raises :class:`InvalidRequest` for a closed wallet.
    """
    return _status_set(wallet, Wallet.Status.ACTIVE, Wallet.Status.FROZEN)


def wallet_unfreeze(*, wallet: Wallet) -> Wallet:
    """Make a frozen wallet active again (an active one is left as it is); inside the caller's
    transaction when there is one. Raises :class:`InvalidRequest` for a closed wallet."""
    return _status_set(wallet, Wallet.Status.FROZEN, Wallet.Status.ACTIVE)
