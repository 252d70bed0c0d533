"""Benchmark: import generated FOCUS files on PostgreSQL; print rows/s, wall seconds and peak memory.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_focus .venv/bin/python bench/import_focus.py [--rows 1000000]

Runs on PostgreSQL only (it refuses anything else). It works in a database named ``bench_focus``
on the server of ``DATABASE_URL`` (or the URL's own name when that starts with ``bench_focus_``, so
two checkouts can run it side by side), which it drops and creates afresh, then migrates. For each size (``--small-rows``, default 100,000, then ``--rows``,
default 1,000,000) it writes a file with the project's FOCUS generator into a temporary folder (removed
at the end, never in the repository), imports it into an empty database, then imports it again (every
row a duplicate). Each generation and import runs in its own process, so ``ru_maxrss`` is that
step's own peak: equal peaks for both sizes show memory flat in file size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_url, recreate_database  # noqa: E402

BENCH_DATABASE = "bench_focus"
TARGET_ROWS_PER_SECOND = 20_000


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    import django

    django.setup()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


# --- child steps: one process each, printing one JSON line --------------------------------------


def _child_generate(path: str, rows: int, seed: int) -> dict:
    _setup_django()
    from chargeback.focus.generator import write_focus_file

    baseline = _peak_mib()
    started = time.perf_counter()
    generated = write_focus_file(path, rows=rows, period="2026-10", seed=seed)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "bytes": Path(path).stat().st_size, "baseline_mib": baseline,
            "peak_mib": _peak_mib(), "total_billed_cost": str(generated.total_billed_cost)}


def _child_import(path: str) -> dict:
    _setup_django()
    from chargeback.services.focus_import import focus_import

    baseline = _peak_mib()
    result = focus_import(path=path, create_teams=True)
    return {"rows_read": result.rows_read, "rows_imported": result.rows_imported,
            "rows_duplicate": result.rows_duplicate, "seconds": result.seconds,
            "rows_per_second": result.rows_per_second, "timings": result.timings,
            "billed_cost": {f"{k:%Y-%m}": str(v) for k, v in result.billed_cost.items()},
            "baseline_mib": baseline, "peak_mib": _peak_mib()}


# --- the driver -----------------------------------------------------------------------------------


def _run_child(env: dict, *args: str) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", *args], env=env, cwd=ROOT,
                               capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"step {' '.join(args)} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _server_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large file (default 1,000,000)")
    parser.add_argument("--small-rows", type=int, default=100_000, help="rows of the small file (default 100,000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, *rest = args.child
        out = _child_generate(rest[0], int(rest[1]), int(rest[2])) if step == "generate" else _child_import(rest[0])
        print(json.dumps(out))
        return

    url = bench_url(BENCH_DATABASE)
    recreate_database(url)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "billing_site.settings"}
    print(f"FOCUS import benchmark on PostgreSQL {_server_version(url)} ({url.rsplit('@', 1)[-1]}), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    sizes = sorted({args.small_rows, args.rows})
    summary = []
    with tempfile.TemporaryDirectory(prefix="bench-focus-") as folder:
        for rows in sizes:
            path = str(Path(folder) / f"focus-{rows}.csv")
            generated = _run_child(env, "generate", path, str(rows), str(args.seed))
            print(f"\n{rows:,} rows: generated {generated['bytes'] / 2**20:,.0f} MiB in {generated['seconds']:.1f} s "
                  f"(peak {generated['peak_mib']:.0f} MiB), Σ BilledCost {generated['total_billed_cost']} USD")
            recreate_database(url)
            subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], env=env, cwd=ROOT,
                           check=True)
            load_before = os.getloadavg()
            first = _run_child(env, "import", path)
            again = _run_child(env, "import", path)
            load_after = os.getloadavg()
            # Python and PostgreSQL share the machine with whatever else runs: say how busy it was.
            print(f"  load average (1, 5, 15 min) before {' '.join(f'{x:.2f}' for x in load_before)}, "
                  f"after {' '.join(f'{x:.2f}' for x in load_after)}")
            assert first["rows_imported"] == rows and again["rows_duplicate"] == rows
            # the file imported to the generator's own total, exactly
            assert {k: Decimal(v) for k, v in first["billed_cost"].items()} == {
                "2026-10": Decimal(generated["total_billed_cost"])}
            for label, run in (("import", first), ("re-import", again)):
                phases = ", ".join(f"{k} {v:.1f} s" for k, v in run["timings"].items())
                print(f"  {label:<9} {run['rows_per_second']:>9,.0f} rows/s  {run['seconds']:7.1f} s wall  "
                      f"peak {run['peak_mib']:.0f} MiB (Django loaded: {run['baseline_mib']:.0f} MiB)  [{phases}]")
            summary.append((rows, first, again))
        recreate_database(url)  # leave an empty database behind, not gigabytes of benchmark rows
    print("\nrows       import rows/s  wall s   peak MiB   re-import rows/s")
    for rows, first, again in summary:
        print(f"{rows:>9,}  {first['rows_per_second']:>12,.0f}  {first['seconds']:6.1f}  {first['peak_mib']:8.0f}   "
              f"{again['rows_per_second']:>12,.0f}")
    best = summary[-1][1]["rows_per_second"]
    print(f"target ≥ {TARGET_ROWS_PER_SECOND:,} rows/s on the largest file: {'met' if best >= TARGET_ROWS_PER_SECOND else 'NOT met'}")


if __name__ == "__main__":
    main()
