"""Benchmark: allocate a month in 3 currencies beside a one-currency month of the same size (target ≤ 1.2×).

Run on PostgreSQL only::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_currencies .venv/bin/python bench/allocation_currencies.py

The script (re)creates the database ``bench_currencies`` on the server of ``DATABASE_URL`` (only that
database is touched), migrates it, and loads two months of the same data as ``bench/allocate.py``
(200 teams of 5 members, the same 5 rules, the same hash-driven columns):

* **the reference**, September 2024: N records, all in USD;
* **the measured month**, October 2024: N records, a third each in USD, EUR and JPY (by the
  record's number), so every team, every rule and the unallocated pool have usage in the three
  currencies: three pools per rule, three tie-outs.

Then it times ``allocation_run_execute`` (create + commit, one transaction) of each month,
alternately, ``--repeat`` times (default 3), and prints the best time of each, the ratio
(3 currencies ÷ 1 currency), the rows written and each currency's tie-out. Best-of-n, alternating,
because the machine is shared: the slowest runs measure the neighbours.

Options: ``--records N`` (default 1,000,000 per month), ``--teams N`` (default 200), ``--repeat N``,
``--keep`` to reuse an already loaded database.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_database, load_average, machine_facts  # noqa: E402
from allocate import LOAD_SQL, USERS_PER_TEAM, _make_rules  # noqa: E402

BENCH_DB = "bench_currencies"
TARGET_RATIO = 1.2

#: The usage INSERT of ``bench/allocate.py``, moved to October and spread over three currencies.
_USAGE_SQL = LOAD_SQL[3]
_THREE_CURRENCIES_SQL = (
    _USAGE_SQL
    .replace("'USD',", "(array['USD','EUR','JPY'])[1 + (g %% 3)::int],")
    .replace("'2024-09-01 00:00:00+00'", "'2024-10-01 00:00:00+00'")
    .replace("date '2024-09-01'", "date '2024-10-01'")
    .replace("'bench-' || g", "'bench-fx-' || g")
)


def _load(records: int, teams: int) -> float:
    from django.db import connection

    assert _THREE_CURRENCIES_SQL.count("'EUR'") == 1 and "2024-10-01" in _THREE_CURRENCIES_SQL
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for sql in [*LOAD_SQL[:3], _USAGE_SQL, _THREE_CURRENCIES_SQL, "ANALYZE"]:
            cursor.execute(sql, {"records": records, "teams": teams, "per_team": USERS_PER_TEAM})
    return time.perf_counter() - started


def _allocate(month: str):
    from chargeback.periods import BillingPeriod
    from chargeback.services.allocation import allocation_run_execute

    started = time.perf_counter()
    run = allocation_run_execute(period=BillingPeriod.month(month))
    return time.perf_counter() - started, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="usage records per month")
    parser.add_argument("--teams", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each month (best is kept)")
    parser.add_argument("--keep", action="store_true", help="reuse the loaded database")
    args = parser.parse_args()

    bench_database(BENCH_DB, keep=args.keep)
    print(machine_facts())
    from django.db.models import Count

    from billing_site.money import format_metered
    from chargeback.models import AllocatedCost, UsageRecord
    from chargeback.selectors import allocation_currency_totals

    if not args.keep:
        seconds = _load(args.records, args.teams)
        _make_rules()
        print(f"loaded 2 × {args.records:,} usage records over {args.teams} teams in {seconds:.1f} s")
    for month, start in (("2024-09", "2024-09-01"), ("2024-10", "2024-10-01")):
        counts = dict(UsageRecord.objects.filter(billing_period_start=start).order_by().values_list("currency")
                      .annotate(n=Count("id")))
        print(f"{month}: " + ", ".join(f"{n:,} records in {c}" for c, n in sorted(counts.items())))

    times: dict[str, list[float]] = {"2024-09": [], "2024-10": []}
    runs = {}
    for _ in range(args.repeat):
        for month in times:
            seconds, runs[month] = _allocate(month)
            times[month].append(seconds)
    one, three = min(times["2024-09"]), min(times["2024-10"])
    ratio = three / one
    for month, label in (("2024-09", "1 currency (reference)"), ("2024-10", "3 currencies")):
        run = runs[month]
        rows = AllocatedCost.objects.filter(run=run).count()
        print(f"allocate {label}: best {min(times[month]):.2f} s of {', '.join(f'{t:.2f}' for t in times[month])}; "
              f"rows {rows:,}, groups {run.group_count:,}")
        for pool in allocation_currency_totals(run):
            exact = pool.allocated_cost + pool.unallocated_cost == pool.total_cost
            print(f"  {pool.currency}: allocated {format_metered(pool.allocated_cost, pool.currency)} of "
                  f"{format_metered(pool.total_cost, pool.currency)}, unallocated "
                  f"{format_metered(pool.unallocated_cost, pool.currency)} ({'exact' if exact else 'BROKEN'})")
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"ratio 3 currencies / 1 currency: {ratio:.2f}× (target ≤ {TARGET_RATIO}×: {verdict}); "
          f"of the sums {sum(times['2024-10']) / sum(times['2024-09']):.2f}×; load average now {load_average()}")


if __name__ == "__main__":
    main()
