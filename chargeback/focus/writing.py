"""Writing a FOCUS file's good rows into the usage table: blocks of COPY text built in a parsing thread
and streamed with ``COPY`` by the thread that owns the connection, in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import operator
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg
from django.db import IntegrityError, connection, transaction

from chargeback.focus.parsing import MISSING_VALUES, RESOURCE_TYPE, ParsedRow, RowParser
from chargeback.focus.results import FocusImportResult, UnmappedValue
from chargeback.focus.teams import TeamResolver
from chargeback.models import UsageRecord
from teams.models import Team

#: Rows per block, where one block is inserted while the next is parsed. Larger blocks
#: cost memory (up to four blocks of COPY text, under 1 kB a row, may be held at once); smaller ones
#: add a few statements per block (measured: 25,000 gave the same speed at 57 MiB more peak memory).
BLOCK_ROWS = 10_000

# Any 64-bit number will do: it only has to be the same for every FOCUS import.
_ADVISORY_LOCK_KEY = 0x466F637573496D70  # "FocusImp"


#: The usage table's columns that a COPY line fills, in the line's order. The last six are the same
#: for every imported row and end each line as one precomputed text (see ``_line_renderer``).
_COPY_COLUMNS = (
    "team_id", "provider", "unit", "quantity", "cost", "currency", "occurred_at", "billing_period_start",
    "external_reference", "idempotency_key", "metadata", "effective_cost", "charge_category", "service_name",
    "sub_account_name", "resource_id", "tags",
    "resource_type", "source", "agent_id", "model", "feature_key", "created_at",
)
#: Rows without Id wait in ``focus_stage_hashed`` with two more columns in front of the line.
_HASHED_COLUMNS = ("rownum", "row_hash") + _COPY_COLUMNS

_COPY_SPECIAL = re.compile(r"[\\\t\n\r]").search
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"
_ZERO = Decimal(0)
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$").match
# What a JSON string may not hold as it is, besides a quote: a backslash, a control character.
_JSON_SPECIAL = re.compile(r"[\\\x00-\x1f]").search


def _copy_text(value: str | None) -> str:
    """``value`` as a field of COPY's text format (backslash, tab and line breaks escaped)."""
    if value is None:
        return _COPY_NULL
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL(value) else value


def _moment_text(cache: dict, value: dt.datetime | dt.date) -> str:
    if len(cache) >= RowParser.CACHE_LIMIT:
        cache.clear()
    text = cache[value] = value.isoformat()
    return text  # not read back from the cache: the other thread may clear it meanwhile


def _raw_getter(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """A function giving the values at ``indexes`` of a record as a tuple (itemgetter when it can)."""
    if len(indexes) >= 2:
        return operator.itemgetter(*indexes)
    if len(indexes) == 1:
        only = indexes[0]
        return lambda values: (values[only],)
    return lambda values: ()


def _line_renderer(parser: RowParser, created_at: dt.datetime) -> Callable[[ParsedRow, str], str]:
    """A function turning a good row and its team id (as text, or ``\\N``) into one COPY text line
    (without its line break) for the usage table's ``_COPY_COLUMNS``, the team id first. A row
    without Id gets ``\\N`` for the idempotency key, which is decided at the end (the caller puts
    its rownum and hash in front: ``_hashed_prefix``).

    Lines in COPY's text format are written by hand: several times cheaper than ``write_row()``
    adapting 23 Python values per row, and the values are validated already. A line is joined as
    it is and then searched once for a character COPY would need escaped (a backslash beyond those
    of its NULLs, a line break, a tab inside a value: one tab too many); only such rare lines are
    built again field by field with escapes. The metadata JSON is a template filled in when it can
    be; the server parses it (and Tags) during the COPY.
    """
    raw_metadata = _raw_getter([i for _, i in parser.metadata_columns])
    # The metadata JSON of a record with every metadata column present and no character that JSON
    # escapes is this template filled in (the column names are plain ASCII); others use json.dumps.
    # Provider columns (x_…) with a name JSON or %-formatting would need escaped take json.dumps.
    plain = all(_PLAIN_NAME(name) for name, _ in parser.metadata_columns)
    template = "{" + ", ".join(f'"{name}": "%s"' for name, _ in parser.metadata_columns) + "}"
    quotes = 4 * len(parser.metadata_columns)  # a quote inside a value makes more
    tabs = len(_COPY_COLUMNS) - 7  # between the 17 fields before the constant ones
    null, missing, special, metadata_of = _COPY_NULL, MISSING_VALUES, _JSON_SPECIAL, parser.metadata_json
    # resource_type, source, agent_id, model, feature_key, created_at (the transaction's now(), as
    # the ORM's auto_now_add would give every row of one save).
    constant = f"\t{RESOURCE_TYPE}\t{UsageRecord.Source.FOCUS_IMPORT}\t\t\t\t{created_at.isoformat()}"
    moments: dict[object, str] = {}  # occurred_at / billing period → text (few distinct values)

    def render(row: ParsedRow, team: str) -> str:
        occurred, period = row.occurred_at, row.billing_period_start
        effective = row.effective_cost
        id_key = row.id_key
        values = raw_metadata(row.values)
        if plain and missing.isdisjoint(values):
            metadata = template % values
            if metadata.count('"') != quotes or special(metadata):
                metadata = metadata_of(row.values)
        else:
            metadata = metadata_of(row.values)
        fields = (
            team, row.provider, row.unit, str(row.quantity), str(row.cost), row.currency,
            moments.get(occurred) or _moment_text(moments, occurred),
            moments.get(period) or _moment_text(moments, period),
            row.external_reference, null if id_key is None else id_key, metadata,
            null if effective is None else str(effective), row.charge_category, row.service_name,
            row.sub_account_name, row.resource_id, row.tags_json,
        )
        line = "\t".join(fields)
        # Each NULL (\N) brings one backslash; any other means a value needs escaping.
        nulls = (team == null) + (id_key is None) + (effective is None)
        if line.count("\\") != nulls or "\n" in line or "\r" in line or line.count("\t") != tabs:
            line = "\t".join(null if f is null else _copy_text(f) for f in fields)
        return line + constant

    return render


def _hashed_prefix(row: ParsedRow) -> str:
    """What goes before a row's line in ``focus_stage_hashed``: ``rownum`` and ``row_hash``."""
    return f"{row.rownum}\t{row.row_hash}\t"


class _Block(NamedTuple):
    """One block of parsed rows, as the parsing thread hands it to the thread that writes."""

    data: bytes  # COPY text lines (each ending in a line break) of rows with an Id
    rows: int  # lines in data
    hashed: bytes  # COPY text lines of rows without Id, for focus_stage_hashed
    # Rows naming a team that had no id yet when parsed: (team key, what goes before the team id,
    # the line after it), completed by the writer once it has resolved the team.
    pending: list[tuple[str, str, str, str, Decimal]]  # … and the row's currency and cost
    new_teams: list[tuple[str, str]]  # team keys first seen in this block, with their first currency
    costs: dict[str, Decimal]  # Σ BilledCost of the rows with an Id (data and pending), per currency


#: Sent by the parsing thread after the last block.
_END = object()


def _copy_blocks(rows: Iterator[ParsedRow], render: Callable[[ParsedRow, str], str], team_ids: dict[str, str],
                 block_rows: int, put: Callable[[object], bool], timings: dict[str, float],
                 result: FocusImportResult) -> None:
    """Turn the good rows into ``_Block``s of COPY text and ``put`` them; stop when ``put`` says so.

    Runs in the parsing thread: it touches no database connection (Django's are per thread), only
    the file, the parser, the result counters that ``good_rows`` keeps, and ``team_ids`` (team key
    → id as text), which the writing thread fills as it resolves the teams of each block. A row
    naming a team not in it yet is handed over as a line without its team id, which the writer
    puts in (as text, so the memory of a block does not depend on how many teams are new in it).
    """
    first_seen: set[str] = set()
    new_teams: list[tuple[str, str]] = []
    lines: list[str] = []
    hashed: list[str] = []
    pending: list[tuple[str, str, str, str, Decimal]] = []
    unmapped = result.unmapped  # rows of keys known to name no team (the writer counts the first ones)
    costs: dict[str, Decimal] = {}
    append, append_hashed, null = lines.append, hashed.append, _COPY_NULL
    busy = 0.0  # seconds spent parsing, not waiting for the writer to take a block

    def hand_over() -> bool:
        nonlocal new_teams, pending, costs
        block = _Block(_copy_data(lines), len(lines), _copy_data(hashed), pending, new_teams, costs)
        lines.clear()
        hashed.clear()
        new_teams, pending, costs = [], [], {}
        return put(block)

    started = time.perf_counter()
    count = 0
    for row in rows:
        if row.id_key is not None:
            costs[row.currency] = costs.get(row.currency, _ZERO) + row.cost
        team_key = row.team_key
        if team_key is None:
            team = null
        else:
            team = team_ids.get(team_key)
            if team is null:
                value = unmapped.get(team_key)
                if value is None:
                    value = unmapped[team_key] = UnmappedValue()
                value.add(row.currency, row.cost)
            elif team is None:
                if team_key not in first_seen:
                    first_seen.add(team_key)
                    new_teams.append((team_key, row.currency))
                prefix = "" if row.id_key is not None else _hashed_prefix(row)
                pending.append((team_key, prefix, render(row, ""), row.currency, row.cost))
                count += 1
                if count == block_rows:
                    count = 0
                    busy += time.perf_counter() - started
                    if not hand_over():
                        return
                    started = time.perf_counter()
                continue
        if row.id_key is not None:
            append(render(row, team))
        else:
            append_hashed(_hashed_prefix(row) + render(row, team))
        count += 1
        if count == block_rows:
            count = 0
            busy += time.perf_counter() - started
            if not hand_over():
                return
            started = time.perf_counter()
    busy += time.perf_counter() - started
    if count and not hand_over():
        return
    timings["read"] = busy


def _copy_data(lines: list[str]) -> bytes:
    """COPY text of ``lines``, each ending in a line break."""
    if not lines:
        return b""
    lines.append("")  # the last line's break
    try:
        return "\n".join(lines).encode()
    finally:
        lines.pop()


def _team_fk_constraint(cursor: Any, table: str) -> str | None:
    """The name of the foreign key constraint of ``table.team_id`` (Django names it with a hash)."""
    cursor.execute(
        "SELECT c.conname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
        "AND a.attnum = ANY (c.conkey) WHERE c.conrelid = %s::regclass AND c.contype = 'f' "
        "AND a.attname = 'team_id'", [table])
    found = cursor.fetchone()
    return found[0] if found else None


def _may_skip_fk_triggers(cursor: Any, table: str) -> bool:
    """Whether the fast path may COPY with ``session_replication_role = replica`` (no trigger fires)
    and check the team foreign key itself, once per team instead of once per row.

    Only when this role may set that parameter (a superuser, or ``GRANT SET ON PARAMETER
    session_replication_role``, PostgreSQL 15+) and ``table`` has no trigger but the internal ones
    of its foreign keys, so that nothing else would be skipped.
    """
    if connection.pg_version < 150000:  # has_parameter_privilege() is new in 15
        return False
    cursor.execute(
        "SELECT has_parameter_privilege('session_replication_role', 'SET') AND NOT EXISTS (SELECT 1 FROM "
        "pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal) AND NOT EXISTS (SELECT 1 FROM "
        "pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) "
        "WHERE c.conrelid = %s::regclass AND c.contype = 'f' AND a.attname NOT IN ('team_id', 'user_id'))",
        [table, table])
    return bool(cursor.fetchone()[0])


def write_rows(rows: Iterator[ParsedRow], result: FocusImportResult, parser: RowParser,
               block_rows: int, *, create_teams: bool = False) -> None:
    """Write the rows block by block, parsing the next block while the server writes this one;
    rows whose key exists already are left out and counted as duplicates.

    Why two threads: parsing is Python (one core, holding the GIL) and COPY, index upkeep and
    foreign key checks are the server's work (another core). Done one after the other they add up;
    here a parsing thread turns block N+1 into COPY text while this thread, which owns the
    connection (and the transaction), writes block N. psycopg releases the GIL while it waits on
    the server, so the two overlap. The queue holds at most one finished block, so at most three
    are in memory (being parsed, waiting, being written) whatever the size of the file.

    Each block of rows with an Id is first COPYed straight into the usage table in a savepoint (the
    fast path: no staging, no INSERT … SELECT, no ON CONFLICT). When a row of it exists already
    (the unique ``(source, idempotency_key)`` refuses it: a re-import, an overlapping file, the same
    Id twice in the file), the savepoint is rolled back and the block goes the careful way: COPY
    into a temporary table, then ``INSERT … SELECT … ON CONFLICT DO NOTHING``, which counts what it
    inserted. Once a block met duplicates, the following blocks take the careful way too, until one
    inserts all its rows (an overlap is usually a run of rows). Either way the unique index decides,
    so the result is the same row for row; the fast path only saves work when nothing conflicts.

    The foreign key to the team is checked at the end of each statement (``SET CONSTRAINTS …
    IMMEDIATE``) rather than at commit: the same checks, but now they run while the parsing thread
    works instead of after it, and a wrong team id still fails the import. The team ids come from
    ``TeamResolver`` in this same transaction. Where the role may (``_may_skip_fk_triggers``), the fast
    path's COPY runs with ``session_replication_role = replica``, which skips the per-row foreign
    key triggers (a query per row, about a quarter of the server's work), and the foreign key is
    checked per team instead: each team id is read with ``FOR KEY SHARE`` as it is resolved, before
    any line carries it, which is what the trigger does for each row (the team exists, and cannot be
    deleted or have its id changed until this transaction ends). ``user_id`` is always NULL here.

    Everything still happens in the caller's one transaction: a bad value in any block (or any
    other failure of the parsing thread) is re-raised here, as it was raised there, before the
    commit, and the transaction rolls back what earlier blocks wrote.

    Rows without Id are kept in a second staging table until the end, because the n-th copy of the
    same values in the file gets ordinal n, counted over the whole file; such rows are rare in real
    files.
    """

    table = UsageRecord._meta.db_table
    teams = TeamResolver(result, create_teams=create_teams)
    timings = result.timings
    blocks: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()  # set by the writer when it gives up: the parser then stops too
    team_ids: dict[str, str] = {}  # filled here, read by the parsing thread
    first_unmapped: dict[str, UnmappedValue] = {}  # rows of unmapped keys in the block that first named them

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                blocks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    columns = ", ".join(_COPY_COLUMNS)
    copy_usage = f"COPY {table} ({columns}) FROM STDIN"
    copy_stage = f"COPY focus_stage ({columns}) FROM STDIN"
    copy_hashed = f"COPY focus_stage_hashed ({', '.join(_HASHED_COLUMNS)}) FROM STDIN"
    # What an INSERT … RETURNING inserted, per currency: (currency, rows, Σ cost).
    inserted_sums = "SELECT currency, count(*), sum(cost) FROM inserted GROUP BY currency"
    insert_staged = (f"WITH inserted AS (INSERT INTO {table} ({columns}) SELECT {columns} FROM focus_stage "
                     f"ON CONFLICT (source, idempotency_key) DO NOTHING RETURNING currency, cost) {inserted_sums}")
    # Rows without Id: the n-th copy of the same values in the file gets ordinal n.
    ordinal = "'row:' || s.row_hash || ':' || row_number() OVER (PARTITION BY s.row_hash ORDER BY s.rownum)"
    insert_hashed = (
        f"WITH inserted AS (INSERT INTO {table} ({columns}) SELECT "
        + ", ".join(ordinal if c == "idempotency_key" else f"s.{c}" for c in _COPY_COLUMNS)
        + " FROM focus_stage_hashed s ON CONFLICT (source, idempotency_key) DO NOTHING RETURNING currency, cost) "
        + inserted_sums
    )
    imported_cost = result.imported_cost

    def count_inserted(found: list[tuple[str, int, Decimal]]) -> int:
        rows = 0
        for currency, n, cost in found:
            imported_cost[currency] = imported_cost.get(currency, _ZERO) + cost
            rows += n
        return rows

    with connection.cursor() as cursor:
        raw = cursor.cursor

        def copy(sql: str, *chunks: bytes) -> None:
            with raw.copy(sql) as stream:
                for chunk in chunks:
                    if chunk:
                        stream.write(chunk)

        # Serialize FOCUS imports: two files naming the same new team must not race to create it.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])
        cursor.execute("SELECT now()")
        created_at = cursor.fetchone()[0]
        cursor.execute("DROP TABLE IF EXISTS focus_stage, focus_stage_hashed")
        # Same column types as the usage table, no constraints, dropped at commit.
        cursor.execute(f"CREATE TEMPORARY TABLE focus_stage ON COMMIT DROP AS SELECT {columns} FROM {table} "
                       "WITH NO DATA")
        cursor.execute(f"CREATE TEMPORARY TABLE focus_stage_hashed ON COMMIT DROP AS SELECT 0::bigint AS rownum, "
                       f"''::text AS row_hash, {columns} FROM {table} WITH NO DATA")
        team_fk = _team_fk_constraint(cursor, table)
        if team_fk:
            cursor.execute(f"SET CONSTRAINTS {connection.ops.quote_name(team_fk)} IMMEDIATE")
        replica = _may_skip_fk_triggers(cursor, table)
        if replica:
            cursor.execute("SELECT current_setting('session_replication_role')")
            role = cursor.fetchone()[0]
        render = _line_renderer(parser, created_at)

        def produce() -> None:
            try:
                _copy_blocks(rows, render, team_ids, block_rows, put, timings, result)
            except BaseException as exc:  # noqa: BLE001 - handed over and re-raised in the writer
                put(exc)
            else:
                put(_END)

        waited = copying = staging = resolving = inserting = 0.0
        inserted = 0
        fast = True
        parser_thread = threading.Thread(target=produce, name="focus-import-parser", daemon=True)
        parser_thread.start()
        try:
            while True:
                clock = time.perf_counter()
                block = blocks.get()
                if block is _END:
                    break
                if isinstance(block, BaseException):
                    raise block
                clock, before = time.perf_counter(), clock
                waited += clock - before
                if block.new_teams:
                    teams.prefetch(key for key, _ in block.new_teams)
                    resolved = {key: teams.resolve(key, currency) for key, currency in block.new_teams}
                    if replica:  # the foreign key check, once per team (see the docstring)
                        named = {team_id for team_id in resolved.values() if team_id is not None}
                        cursor.execute(f"SELECT id FROM {Team._meta.db_table} WHERE id = ANY(%s) FOR KEY SHARE",
                                       [sorted(named)])
                        missing = named - {found for found, in cursor.fetchall()}
                        if missing:
                            raise IntegrityError(f"teams {sorted(missing)} disappeared during the FOCUS import")
                    team_ids.update((key, _COPY_NULL if team_id is None else str(team_id))
                                    for key, team_id in resolved.items())
                data, count, hashed, costs = block.data, block.rows, block.hashed, block.costs
                if block.pending:  # every team named so far has an id now
                    with_id = [team_ids[key] + rest for key, prefix, rest, _, _ in block.pending if not prefix]
                    without = [prefix + team_ids[key] + rest for key, prefix, rest, _, _ in block.pending if prefix]
                    for key, _, _, currency, cost in block.pending:
                        if team_ids[key] == _COPY_NULL:
                            value = first_unmapped.get(key)
                            if value is None:
                                value = first_unmapped[key] = UnmappedValue()
                            value.add(currency, cost)
                    data, count = data + _copy_data(with_id), count + len(with_id)
                    hashed += _copy_data(without)
                    del with_id, without
                block = None  # its text may go before the next block comes
                clock, before = time.perf_counter(), clock
                resolving += clock - before
                if hashed:
                    copy(copy_hashed, hashed)
                if count and fast:
                    try:
                        with transaction.atomic():
                            if replica:  # reverted by the savepoint's rollback too
                                cursor.execute("SET LOCAL session_replication_role = replica")
                            copy(copy_usage, data)
                            if replica:
                                cursor.execute("SELECT set_config('session_replication_role', %s, true)", [role])
                        inserted += count
                        count = 0
                        for currency, cost in costs.items():
                            imported_cost[currency] = imported_cost.get(currency, _ZERO) + cost
                    except psycopg.errors.UniqueViolation:
                        fast = False
                    clock, before = time.perf_counter(), clock
                    copying += clock - before
                if count:  # not done by the fast path
                    copy(copy_stage, data)
                    clock, before = time.perf_counter(), clock
                    staging += clock - before
                    cursor.execute(insert_staged)
                    added = count_inserted(cursor.fetchall())
                    inserted += added
                    fast = added == count  # no duplicates: try the fast path again
                    cursor.execute("TRUNCATE focus_stage")
                    clock, before = time.perf_counter(), clock
                    inserting += clock - before
                del data, hashed
        finally:
            stop.set()
            parser_thread.join()
        clock = time.perf_counter()
        cursor.execute(insert_hashed)
        inserted += count_inserted(cursor.fetchall())
        if team_fk:  # back to Django's INITIALLY DEFERRED for the rest of the caller's transaction
            cursor.execute(f"SET CONSTRAINTS {connection.ops.quote_name(team_fk)} DEFERRED")
        inserting += time.perf_counter() - clock
    result.rows_imported = inserted
    for key, first in first_unmapped.items():  # the parsing thread has stopped: merge its counts
        value = result.unmapped.setdefault(key, UnmappedValue())
        value.rows += first.rows
        for currency, cost in first.cost.items():
            value.cost[currency] = value.cost.get(currency, _ZERO) + cost
    result.rows_unallocated += sum(value.rows for value in result.unmapped.values())
    # The phases overlap (parsing runs beside the others), so they add up to more than the wall time.
    timings.update(wait=waited, teams=resolving, copy=copying, stage=staging, insert=inserting)
