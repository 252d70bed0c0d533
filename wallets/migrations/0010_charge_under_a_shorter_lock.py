"""The charge function ``wallets_charge`` holds the wallet's row lock for one statement.

The steps and their rules are those of 0006 (see its docstring); what changes is what runs while
the wallet row is locked, since on one hot wallet every charge waits for the previous one's lock:

1. the idempotency key is claimed before any lock (as before);
2. the team's billing settings are read without the wallet's lock (a wallet never changes team);
3. the common case, an active wallet without granted credit whose charge stays within the floor
   and crosses no threshold not yet warned of, is one statement: the ``UPDATE`` that takes the
   row lock and moves the balance, the ``INSERT`` of the ledger entry (its balance before is the
   balance after plus the amount, both exact) and the key's stored result, as data-modifying CTEs;
4. anything else (a refusal, granted credit to spend, a low-balance warning to send) matches
   nothing in step 3, which then holds no lock, and runs the steps of 0006 under ``FOR UPDATE``.

Same signature, same results and errors; the equivalence test against the Python oracle
(``tests/wallets/test_charge_function.py``) covers both paths. The SQL is in
``0010_wallets_charge.sql`` beside this migration; reversed, 0009's body comes back.
"""

from pathlib import Path

from django.db import migrations

HERE = Path(__file__).resolve().parent
FUNCTION = (HERE / "0010_wallets_charge.sql").read_text(encoding="utf-8")
FUNCTION_BEFORE = (HERE / "0009_wallets_charge.sql").read_text(encoding="utf-8")


class Migration(migrations.Migration):

    dependencies = [("wallets", "0009_charge_function_reads_the_moved_tables")]

    # One statement each (a list keeps Django from splitting the function's body at its semicolons).
    operations = [migrations.RunSQL([FUNCTION], [FUNCTION_BEFORE])]
