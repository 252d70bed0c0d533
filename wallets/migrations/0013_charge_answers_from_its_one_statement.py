"""The charge function ``wallets_charge`` answers from the statement that holds the row lock.

In 0010 the common case's statement (the ``UPDATE`` that locks the wallet, the ledger entry's
``INSERT`` and the key's stored result, as data-modifying CTEs) wrote its figures into variables,
and a second statement, ``RETURN QUERY SELECT`` of those variables, answered: one more statement
run while the wallet's row lock is held, since on one hot wallet every charge waits for the
previous one's commit. Now that statement is itself the ``RETURN QUERY``; ``FOUND`` tells the
function it matched, else step 4 runs as before.

Same signature, same results and errors; the equivalence test against the Python oracle
(``tests/wallets/test_charge_function.py``) covers both paths. The SQL is in
``0013_wallets_charge.sql`` beside this migration; reversed, 0010's body comes back.
"""

from pathlib import Path

from django.db import migrations

HERE = Path(__file__).resolve().parent
FUNCTION = (HERE / "0013_wallets_charge.sql").read_text(encoding="utf-8")
FUNCTION_BEFORE = (HERE / "0010_wallets_charge.sql").read_text(encoding="utf-8")


class Migration(migrations.Migration):

    dependencies = [("wallets", "0012_ledger_search_trigram")]

    # One statement each (a list keeps Django from splitting the function's body at its semicolons).
    operations = [migrations.RunSQL([FUNCTION], [FUNCTION_BEFORE])]
