"""Benchmark: the FOCUS import of the same rows as CSV, gzip'd CSV and Parquet, beside a raw COPY of them.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_focus .venv/bin/python bench/import_focus_formats.py [--rows 1000000]

Runs on PostgreSQL only, in the scratch database ``bench_focus`` (see ``_setup.bench_url``), dropped
and created afresh for each import. One file of ``--rows`` rows is generated with the project's
FOCUS generator (CSV), then written as gzip'd CSV and as Parquet (typed: decimal amounts, UTC
timestamps (naive, read as UTC), row groups of ``--row-group`` rows, snappy, as AWS Data Exports write FOCUS). Each
format is imported into an empty database in its own process (``ru_maxrss`` is that import's own
peak). The reference is a raw ``COPY`` of the very rows the CSV import wrote, from a file of COPY
text into the emptied usage table (same indexes and constraints), in the same run.

``--rounds N`` repeats the four steps N times, interleaved, and prints each ratio as the ratio of
the summed times with each round's own ratio beside it: on a shared machine one import at a
changing load moves more than the formats differ.

Targets: Parquet ≥ 1.0× the CSV rate; CSV ≥ 30 % of the raw COPY rate.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _setup import bench_url, recreate_database  # noqa: E402

BENCH_DATABASE = "bench_focus"
_COPY_COLUMNS = ("team_id, provider, unit, quantity, cost, currency, occurred_at, billing_period_start, "
                 "external_reference, idempotency_key, metadata, effective_cost, charge_category, service_name, "
                 "sub_account_name, resource_id, tags, resource_type, source, agent_id, model, feature_key, "
                 "created_at")


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")
    import django

    django.setup()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- child steps ----------------------------------------------------------------------------------


def _child_generate(path: str, rows: int, seed: int) -> dict:
    _setup_django()
    from chargeback.focus.generator import write_focus_file

    started = time.perf_counter()
    write_focus_file(path, rows=rows, period="2026-10", seed=seed)
    return {"seconds": time.perf_counter() - started, "bytes": Path(path).stat().st_size}


def _child_parquet(source: str, target: str, row_group: int) -> dict:
    """The CSV as typed Parquet, streamed (pyarrow's CSV reader, then a ParquetWriter)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    started = time.perf_counter()
    header = Path(source).open(encoding="utf-8").readline().strip().replace('"', "").split(",")
    amounts = {"BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "ListUnitPrice", "ContractedUnitPrice"}
    moments = {"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"}
    types = {c: pa.decimal128(30, 12) if c in amounts else pa.timestamp("us") if c in moments
             else pa.string() for c in header}
    reader = pacsv.open_csv(source, read_options=pacsv.ReadOptions(block_size=64 << 20),
                            convert_options=pacsv.ConvertOptions(column_types=types, null_values=["NULL", ""],
                                                                 strings_can_be_null=True,
                                                                 timestamp_parsers=["%Y-%m-%d %H:%M:%S"]))
    writer = None
    pending: list = []
    pending_rows = 0
    for batch in reader:
        if writer is None:
            writer = pq.ParquetWriter(target, batch.schema, compression="snappy")
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= row_group:
            table = pa.Table.from_batches(pending)
            writer.write_table(table, row_group_size=row_group)
            pending, pending_rows = [], 0
    if pending:
        writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group)
    writer.close()
    meta = pq.ParquetFile(target).metadata
    return {"seconds": time.perf_counter() - started, "bytes": Path(target).stat().st_size,
            "row_groups": meta.num_row_groups}


def _child_import(path: str) -> dict:
    _setup_django()
    from chargeback.services.focus_import import focus_import

    baseline = _peak_mib()
    result = focus_import(path=path, create_teams=True)
    return {"rows_read": result.rows_read, "rows_imported": result.rows_imported, "seconds": result.seconds,
            "rows_per_second": result.rows_per_second, "format": result.file_format,
            "version": result.focus_version, "baseline_mib": baseline, "peak_mib": _peak_mib(),
            "billed_cost": {f"{k:%Y-%m} {c}": str(v.billed_cost) for (k, c), v in result.periods.items()}}


def _child_copy(dump: str) -> dict:
    """Dump the usage table as COPY text, empty it, and time a raw COPY of the same rows back in."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        with conn.cursor() as cur, open(dump, "wb") as out:
            with cur.copy(f"COPY chargeback_usagerecord ({_COPY_COLUMNS}) TO STDOUT") as copy:
                for chunk in copy:
                    out.write(chunk)
            cur.execute("SELECT count(*) FROM chargeback_usagerecord")
            rows = cur.fetchone()[0]
            cur.execute("TRUNCATE chargeback_usagerecord CASCADE")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, open(dump, "rb") as data:
            with cur.copy(f"COPY chargeback_usagerecord ({_COPY_COLUMNS}) FROM STDIN") as copy:
                while chunk := data.read(1 << 20):
                    copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds, "peak_mib": _peak_mib()}


# --- the driver -----------------------------------------------------------------------------------


def _run_child(env: dict, *args: str) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", *args], env=env, cwd=ROOT,
                               capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"step {' '.join(args)} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _fresh(url: str, env: dict) -> None:
    recreate_database(url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], env=env, cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the file (default 1,000,000)")
    parser.add_argument("--row-group", type=int, default=100_000, help="Parquet rows per row group (default 100,000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=1,
                        help="imports of each format, interleaved (CSV, COPY, gzip'd CSV, Parquet per round)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, *rest = args.child
        steps = {"generate": lambda: _child_generate(rest[0], int(rest[1]), int(rest[2])),
                 "parquet": lambda: _child_parquet(rest[0], rest[1], int(rest[2])),
                 "import": lambda: _child_import(rest[0]), "copy": lambda: _child_copy(rest[0])}
        print(json.dumps(steps[step]()))
        return

    url = bench_url(BENCH_DATABASE)
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "billing_site.settings"}
    print(f"FOCUS import by format, {args.rows:,} rows; {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="bench-focus-formats-") as folder:
        csv_path, gz_path = Path(folder) / "focus.csv", Path(folder) / "focus.csv.gz"
        parquet_path, dump = Path(folder) / "focus.parquet", Path(folder) / "usage.copy"
        made = _run_child(env, "generate", str(csv_path), str(args.rows), str(args.seed))
        with csv_path.open("rb") as raw, gzip.open(gz_path, "wb", compresslevel=6) as packed:
            shutil.copyfileobj(raw, packed, 1 << 20)
        parquet = _run_child(env, "parquet", str(csv_path), str(parquet_path), str(args.row_group))
        print(f"files: CSV {made['bytes'] / 2**20:,.0f} MiB, gzip'd CSV {gz_path.stat().st_size / 2**20:,.0f} MiB, "
              f"Parquet {parquet['bytes'] / 2**20:,.0f} MiB ({parquet['row_groups']} row groups)")
        runs: dict[str, list[dict]] = {"CSV": [], "raw COPY": [], "gzip'd CSV": [], "Parquet": []}
        for r in range(args.rounds):
            print(f"round {r + 1} (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}):")
            for label, path in (("CSV", csv_path), ("gzip'd CSV", gz_path), ("Parquet", parquet_path)):
                _fresh(url, env)
                run = _run_child(env, "import", str(path))
                runs[label].append(run)
                assert run["rows_imported"] == args.rows, run
                print(f"  {label:<11} {run['rows_per_second']:>9,.0f} rows/s  {run['seconds']:6.1f} s  "
                      f"peak {run['peak_mib']:.0f} MiB (Django loaded {run['baseline_mib']:.0f})  "
                      f"[read as {run['format']}, FOCUS {run['version']}]")
                if label == "CSV":
                    copied = _run_child(env, "copy", str(dump))
                    runs["raw COPY"].append(copied)
                    dump.unlink()
                    assert copied["rows"] == args.rows
                    print(f"  {'raw COPY':<11} {copied['rows_per_second']:>9,.0f} rows/s  {copied['seconds']:6.1f} s  "
                          f"peak {copied['peak_mib']:.0f} MiB  (the CSV import's rows, COPY text into the emptied table)")
        sums = {json.dumps(r["billed_cost"], sort_keys=True) for label, done in runs.items() if label != "raw COPY"
                for r in done}
        assert len(sums) == 1, "the three formats imported different totals"
        recreate_database(url)

    def ratio_of(figure: str, reference: str) -> str:
        # The ratio of the summed times (the rates of the same rows), then each round's own ratio.
        each = [a["rows_per_second"] / b["rows_per_second"] for a, b in zip(runs[figure], runs[reference])]
        total = sum(b["seconds"] for b in runs[reference]) / sum(a["seconds"] for a in runs[figure])
        return f"{total:.2f}" + (f" (rounds: {', '.join(f'{x:.2f}' for x in each)})" if len(each) > 1 else "")

    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    parquet_ratio = float(ratio_of("Parquet", "CSV").split()[0])
    print(f"Parquet / CSV = {ratio_of('Parquet', 'CSV')} (target ≥ 1.0: {'met' if parquet_ratio >= 1.0 else 'NOT met'})")
    gz_ratio = ratio_of("gzip'd CSV", "CSV")
    print(f"gzip'd CSV / CSV = {gz_ratio}")
    copy_ratio = float(ratio_of("CSV", "raw COPY").split()[0])
    print(f"CSV / raw COPY = {ratio_of('CSV', 'raw COPY')} (target ≥ 0.30: {'met' if copy_ratio >= 0.30 else 'NOT met'})")
    print("Σ BilledCost per period and currency: equal for the three formats")


if __name__ == "__main__":
    main()
