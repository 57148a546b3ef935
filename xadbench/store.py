"""The results store of a run folder: SQLite from the standard library.

`<run>/results.sqlite` holds a `results` table (one row per job × blur × metric, UNIQUE on those
three; its columns come from one list, and opening an older store adds the columns it lacks) and
a `jobs` table (one entry per job: the process that claimed it, when it finished, whether it
saved a checkpoint); derived tables (`replace_derived`: the bootstrap intervals of
`reports.intervals`) sit beside them. A finished job's rows and its `jobs` entry are written in ONE transaction,
so a killed process leaves all of a job's rows or none; WAL mode lets readers read while a writer
writes, and a writer waits for another (busy timeout) instead of failing.

After each job the whole table is exported to `<run>/results.csv` for people and pandas,
atomically and under the store's write lock, so concurrent exports land in commit order.

Two processes writing into one folder share the work: a process claims a job before it starts
it; a job claimed by a live process is left to that process, a claim of a process that no
longer runs on this host is taken over (see `process_alive`).
"""
from __future__ import annotations

import csv
import io
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xadbench.errors import XadError
from xadbench.files import Owner, atomic_write, process_alive, this_process

#: What ResultStore.claim returns besides the live Owner of a job.
CLAIMED, FINISHED = "claimed", "finished"
#: A job id as xadbench writes it (16 hex digits of a SHA-1); a CSV row with another was torn.
JOB_ID = re.compile(r"[0-9a-f]{16}")
#: What to do about a damaged row of an older release's results CSV.
FIX_ROW = "delete that line and the other rows of its job (or jobs), then rerun: the job runs again"
#: The UNIQUE key of a results row.
KEY = ("job_id", "blur", "metric")
#: Seconds a writer waits for another writer's transaction before giving up.
BUSY_TIMEOUT_S = 120
SCHEMA_VERSION = 1


# ---- values -----------------------------------------------------------------------------------
def _sql_value(value: Any, column: str) -> Any:
    """A value SQLite stores as is: numpy scalars become Python numbers; NaN becomes NULL."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise XadError(f"results column {column!r}: {type(value).__name__} value {value!r} cannot be stored; "
                   "give a number or text")


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


class ResultStore:
    """The results of one run folder: `<name>.sqlite` (the store) and `<name>.csv` (its export).

    `columns` is the one column list of the results table (it must hold KEY and `value`);
    `text_columns` are read back as text whatever they hold (e.g. a field that is a number or
    'all'). A folder with only `<name>.csv` (written before there was a store) is imported on
    `open()` after every row is checked (`value_range(metric)`: the range a metric's values must
    lie in, None where none is declared); `read()` reads such a folder without writing to it.
    """

    def __init__(self, run_dir: Path, columns: Sequence[str], name: str = "results",
                 text_columns: Sequence[str] = (),
                 value_range: Callable[[str], tuple[float, float] | None] = lambda metric: None):
        self.run_dir = Path(run_dir)
        self.columns = list(columns)
        missing = [c for c in (*KEY, "value") if c not in self.columns]
        if missing:
            raise ValueError(f"a results table needs the columns {', '.join(missing)}")
        self.path = self.run_dir / f"{name}.sqlite"
        self.csv_path = self.run_dir / f"{name}.csv"
        self.text_columns = list(text_columns)
        self.value_range = value_range

    # -- connections --
    def exists(self) -> bool:
        """Whether the store file is there (it may still lack its tables: see `_reader`)."""
        return self.path.is_file()

    def _connect(self, target: str | Path | None = None) -> sqlite3.Connection:
        target = self.path if target is None else target
        try:
            conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return conn

    def _error(self, exc: sqlite3.Error) -> XadError:
        """One line for an SQLite failure, naming the store."""
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc)
            if "locked" in text or "busy" in text:
                return XadError(f"{self.path}: another process held the results store for over {BUSY_TIMEOUT_S} s; "
                                "try again when it is done")
            return XadError(f"{self.path}: cannot use the results store ({text})")
        return XadError(f"{self.path}: damaged results store ({exc}); move it aside and rerun: the rows of "
                        f"{self.csv_path.name} (exported after every job) are then imported and the rest rerun")

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE: the store's write lock from the start)."""
        own = conn is None
        conn = conn or self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            if own:
                conn.close()

    # -- schema --
    def _check_ours(self, conn: sqlite3.Connection) -> bool:
        """True when the file holds xadbench's store (its `user_version` and its `results` and
        `jobs` tables), False when it holds no table yet; any other database (another tool's
        tables) is refused in one line, before anything is written to it or read from it."""
        try:
            tables = sorted(name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"))
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if not tables:
            return False
        if version == SCHEMA_VERSION and {"results", "jobs"} <= set(tables):
            return True
        raise XadError(f"{self.path}: not an xadbench results store (it holds the table(s) {', '.join(tables)}"
                       f"{'' if version == SCHEMA_VERSION else f' and schema version {version}'}); move it aside "
                       "or choose another --out folder")

    def _create_schema(self, conn: sqlite3.Connection) -> bool:
        """Create the tables or add the columns an older xadbench store lacks (inside a
        transaction; a foreign store is refused by `_check_ours` first); True when the results
        table is new."""
        if not self._check_ours(conn):
            names = ", ".join(f'"{c}"' for c in self.columns)
            conn.execute(f"CREATE TABLE results ({names}, UNIQUE ({', '.join(KEY)}))")
            conn.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, host TEXT, pid INTEGER, start TEXT, "
                         "claimed REAL, finished REAL, checkpoint INTEGER)")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            return True
        have = self._have(conn)
        for column in self.columns:
            if column not in have:
                conn.execute(f'ALTER TABLE results ADD COLUMN "{column}"')
        return False

    def open(self) -> "ResultStore":
        """Create the run folder and the store (WAL mode, current columns) where missing; a
        folder with only a results CSV gets its rows imported. Call before writing."""
        if not self.exists() and self.csv_path.is_file():
            self._read_csv()  # refuses a damaged CSV before anything is written
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise XadError(f"{self.run_dir}: cannot create the run folder ({exc.strerror})") from None
        conn = self._connect()
        try:
            try:
                self._check_ours(conn)  # before WAL mode, which already writes to the file
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            with self._transaction(conn):
                if self._create_schema(conn) and self.csv_path.is_file():
                    self._import(conn, self._read_csv())
        finally:
            conn.close()
        return self

    # -- the CSV of an older release --
    def _read_csv(self) -> list[dict[str, Any]]:
        """The rows of a results CSV, each checked: one line naming the file, the line and the
        problem for a torn last line, a row with too few or too many fields or a job_id that is
        not one (a row cut and glued to the next), an unknown column, a value that is not a
        number or outside its metric's range, or a second row for one job × blur × metric."""
        path = self.csv_path
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise XadError(f"{path}: not a results file (not UTF-8 text); move it aside to start the run afresh") from None
        except OSError as exc:
            raise XadError(f"{path}: cannot read ({exc.strerror})") from None
        if text and not text.endswith("\n"):
            raise XadError(f"{path}: the last line is incomplete (a torn write); {FIX_ROW}")
        reader = csv.reader(io.StringIO(text), strict=True)
        rows, seen = [], set()
        try:
            header = next(reader, None)
            if header is None:
                return []
            unknown = [c for c in header if c not in self.columns]
            missing = [c for c in (*KEY, "value") if c not in header]
            if unknown or missing or len(set(header)) != len(header):
                problem = (f"unknown column(s) {', '.join(unknown)}" if unknown else
                           f"no column(s) {', '.join(missing)}" if missing else "a column twice")
                raise XadError(f"{path}: {problem} in the header; expected the columns {', '.join(self.columns)}")
            for record in reader:
                where = f"{path}, line {reader.line_num}"
                if len(record) != len(header):
                    raise XadError(f"{where}: {len(record)} fields where the header has {len(header)} "
                                   f"(a torn or glued row); {FIX_ROW}")
                row: dict[str, Any] = dict(zip(header, record))
                try:  # "" is how a CSV writes NaN (a metric that does not apply)
                    row["value"] = float(row["value"]) if row["value"] != "" else float("nan")
                except ValueError:
                    raise XadError(f"{where}: value {row['value']!r} is not a number") from None
                bounds = self.value_range(row["metric"])
                if bounds is not None and not math.isnan(row["value"]) and not bounds[0] <= row["value"] <= bounds[1]:
                    raise XadError(f"{where}: {row['metric']} = {row['value']:g} is outside its range "
                                   f"[{bounds[0]:g}, {bounds[1]:g}]; {FIX_ROW}")
                key = tuple(row[k] for k in KEY)
                if not JOB_ID.fullmatch(row["job_id"]):
                    raise XadError(f"{where}: job_id {row['job_id']!r} is not 16 hex digits (a torn or glued row); "
                                   f"{FIX_ROW}")
                if not all(key):
                    raise XadError(f"{where}: empty {' or '.join(KEY)}")
                if key in seen:
                    raise XadError(f"{where}: a second row for job {key[0]}, blur {key[1]}, metric {key[2]}")
                seen.add(key)
                rows.append(row)
        except csv.Error as exc:
            raise XadError(f"{path}, line {reader.line_num}: {exc}") from None
        return rows

    def _import(self, conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
        """Imported rows count as finished jobs; whether a job saved a checkpoint is unknown."""
        for row in rows:
            self._insert(conn, row)
        now = time.time()
        conn.executemany("INSERT OR IGNORE INTO jobs (job_id, finished) VALUES (?, ?)",
                         [(job_id, now) for job_id in dict.fromkeys(r["job_id"] for r in rows)])

    # -- writing --
    def _insert(self, conn: sqlite3.Connection, row: dict[str, Any]) -> None:
        unknown = [k for k in row if k not in self.columns]
        if unknown:
            raise XadError(f"result row has field(s) {', '.join(unknown)} that are not results columns "
                           f"({', '.join(self.columns)})")
        values = [_sql_value(row.get(c), c) for c in self.columns]
        if not _is_number(values[self.columns.index("value")]):
            raise XadError(f"job {row.get('job_id')}: metric {row.get('metric')!r} has value {row['value']!r}, not a number")
        names = ", ".join(f'"{c}"' for c in self.columns)
        try:
            conn.execute(f"INSERT INTO results ({names}) VALUES ({', '.join('?' * len(values))})", values)
        except sqlite3.IntegrityError:
            raise XadError(f"{self.path}: job {row.get('job_id')} already has a row for blur {row.get('blur')!r}, "
                           f"metric {row.get('metric')!r}") from None

    def _insert_job_rows(self, conn: sqlite3.Connection, job_id: str, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            if row.get("job_id") != job_id:
                raise XadError(f"a row of job {job_id} names job {row.get('job_id')!r}")
            self._insert(conn, row)

    def add_job(self, job_id: str, rows: Sequence[dict[str, Any]], checkpoint: bool) -> None:
        """A finished job's rows and its `jobs` entry, in one transaction."""
        with self._transaction() as conn:
            finished = conn.execute("SELECT finished FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if finished is not None and finished[0] is not None:
                raise XadError(f"{self.path}: job {job_id} is already finished; its rows are kept")
            self._insert_job_rows(conn, job_id, rows)
            owner = this_process()
            conn.execute("INSERT INTO jobs (job_id, host, pid, start, claimed, finished, checkpoint) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET "
                         "host=excluded.host, pid=excluded.pid, start=excluded.start, "
                         "finished=excluded.finished, checkpoint=excluded.checkpoint",
                         (job_id, owner.host, owner.pid, owner.start, time.time(), time.time(), int(checkpoint)))

    def replace_job(self, job_id: str, rows: Sequence[dict[str, Any]]) -> None:
        """Replace every row of a finished job by `rows`, in one transaction."""
        with self._transaction() as conn:
            finished = conn.execute("SELECT finished FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if finished is None or finished[0] is None:
                raise XadError(f"{self.path}: job {job_id} is not finished; there are no rows to replace")
            conn.execute("DELETE FROM results WHERE job_id=?", (job_id,))
            self._insert_job_rows(conn, job_id, rows)

    def drop_jobs(self, job_ids: Iterable[str]) -> None:
        """Forget jobs (their rows and entries) in one transaction, so they run again."""
        ids = [(j,) for j in job_ids]
        with self._transaction() as conn:
            conn.executemany("DELETE FROM results WHERE job_id=?", ids)
            conn.executemany("DELETE FROM jobs WHERE job_id=?", ids)

    # -- claims --
    def claim(self, job_id: str) -> str | Owner:
        """Claim a job for this process: CLAIMED when it is now ours (it was unclaimed, or
        claimed by a process that no longer runs, or by this one), FINISHED, or the live Owner
        that runs it."""
        me = this_process()
        with self._transaction() as conn:
            entry = conn.execute("SELECT host, pid, start, finished FROM jobs WHERE job_id=?", (job_id,)).fetchone()
            if entry is not None:
                if entry[3] is not None:
                    return FINISHED
                owner = Owner(entry[0], entry[1], entry[2])
                if owner != me and process_alive(owner):
                    return owner
            conn.execute("INSERT INTO jobs (job_id, host, pid, start, claimed) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT (job_id) DO UPDATE SET host=excluded.host, pid=excluded.pid, "
                         "start=excluded.start, claimed=excluded.claimed",
                         (job_id, me.host, me.pid, me.start, time.time()))
        return CLAIMED

    def release(self, job_id: str) -> None:
        """Give up this process's claim of an unfinished job (it failed or was interrupted)."""
        me = this_process()
        with self._transaction() as conn:
            conn.execute("DELETE FROM jobs WHERE job_id=? AND finished IS NULL AND host=? AND pid=?",
                         (job_id, me.host, me.pid))

    # -- reading --
    def _reader(self) -> sqlite3.Connection | None:
        """A connection to the store, or (no store, or one whose creation was cut short) to an
        in-memory store holding the checked rows of the results CSV; None without either."""
        if self.exists():
            conn = self._connect()
            try:
                if self._check_ours(conn):
                    return conn
            except XadError:
                conn.close()
                raise
            conn.close()
        if not self.csv_path.is_file():
            return None
        rows = self._read_csv()
        conn = self._connect(":memory:")
        with self._transaction(conn):
            self._create_schema(conn)
            self._import(conn, rows)
        return conn

    def finished(self) -> dict[str, bool | None]:
        """Finished job ids -> whether the job saved a checkpoint (None: unknown, imported)."""
        conn = self._reader()
        if conn is None:
            return {}
        try:
            found = conn.execute("SELECT job_id, checkpoint FROM jobs WHERE finished IS NOT NULL").fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            conn.close()
        return {str(job_id): None if flag is None else bool(flag) for job_id, flag in found}

    @staticmethod
    def _have(conn: sqlite3.Connection) -> list[str]:
        return [row[1] for row in conn.execute("PRAGMA table_info(results)")]

    def _rows(self, conn: sqlite3.Connection) -> pd.DataFrame:
        # a column an older store lacks is selected as NULL: SQLite reads a double-quoted name
        # that is not a column as a string literal, which would fill it with its own name
        have = self._have(conn)
        names = ", ".join(f'"{c}"' if c in have else f'NULL AS "{c}"' for c in self.columns)
        records = conn.execute(f"SELECT {names} FROM results ORDER BY rowid").fetchall()
        return pd.DataFrame.from_records(records, columns=self.columns)

    def _csv_text(self, conn: sqlite3.Connection) -> str:
        return self._rows(conn).to_csv(index=False)

    def read(self) -> pd.DataFrame:
        """Every row, in the order they were stored, typed as pandas reads the exported CSV:
        `text_columns` (and job_id) as text with empty cells "", the others inferred with empty
        cells missing (NaN), e.g. a column added after the older rows were stored.
        A folder with only a results CSV is read (and checked) without writing a store."""
        conn = self._reader()
        if conn is None:
            return pd.DataFrame(columns=self.columns)
        try:
            text = self._csv_text(conn)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            conn.close()
        text_columns = ["job_id", *self.text_columns]
        empty_is_missing = {c: [""] for c in self.columns if c not in text_columns}
        return pd.read_csv(io.StringIO(text), dtype=dict.fromkeys(text_columns, str), keep_default_na=False,
                           na_values=empty_is_missing)

    def export_problem(self) -> str | None:
        """Where <name>.csv differs from the store's rows (edited by hand, or written by another
        tool), one line naming its first differing line; None when it matches or either is absent.
        A run writing into the folder exports after each job, so run this when none does."""
        if not self.exists() or not self.csv_path.is_file():
            return None
        conn = self._reader()
        try:
            expected = self._csv_text(conn).splitlines()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            conn.close()
        try:
            found = self.csv_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            return f"{self.csv_path}: cannot read ({exc.strerror})"
        if found == expected:
            return None
        line = next((i for i, (a, b) in enumerate(zip(found, expected)) if a != b), min(len(found), len(expected)))
        return (f"{self.csv_path}: line {line + 1} differs from the rows of {self.path.name}, which reports "
                "show (edited by hand?); the next `xadbench run` into the folder writes it again from the store")

    def export_csv(self) -> None:
        """Write <name>.csv from the store, atomically, holding the store's write lock so that
        exports of concurrent processes land in the order of their commits."""
        with self._transaction() as conn:
            text = self._csv_text(conn)
            with atomic_write(self.csv_path) as handle:
                handle.write(text)

    # -- derived tables: numbers computed from the results and predictions (bootstrap intervals) --
    def replace_derived(self, table: str, columns: Sequence[str], key: dict[str, Any],
                        rows: Sequence[Sequence[Any]]) -> None:
        """Replace the rows of `table` that match `key` (column → value) by `rows` (values in
        `columns` order; bytes are stored as BLOBs), in one transaction: a reader sees the old
        rows or the new ones. The table is created where missing."""
        quoted = ", ".join(f'"{c}"' for c in columns)
        where = " AND ".join(f'"{c}"=?' for c in key)
        with self._transaction() as conn:
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({quoted})')
            conn.execute(f'DELETE FROM "{table}" WHERE {where}', list(key.values()))
            conn.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({", ".join("?" * len(columns))})', rows)

    def read_derived(self, table: str, columns: Sequence[str], key: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of `table` matching `key`, in the order they were written; [] when the store
        or the table does not exist."""
        if not self.exists():
            return []
        conn = self._connect()
        try:
            if not self._check_ours(conn) or not conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone():
                return []
            where = " AND ".join(f'"{c}"=?' for c in key)
            quoted = ", ".join(f'"{c}"' for c in columns)
            return conn.execute(f'SELECT {quoted} FROM "{table}" WHERE {where} ORDER BY rowid',
                                list(key.values())).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            conn.close()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's write lock, e.g. to update another file of the run folder safely."""
        with self._transaction():
            yield

    def problems(self) -> list[str]:
        """What is wrong with the store itself: SQLite's integrity check, values that are not
        numbers, rows of jobs that are not finished. One line each; empty when it is sound."""
        try:
            conn = self._reader()
        except XadError as exc:
            return [str(exc)]
        if conn is None:
            return []
        try:
            found = [f"{self.path}: {line}" for (line,) in conn.execute("PRAGMA integrity_check") if line != "ok"]
            if found:
                return found
            for job_id, metric, value in conn.execute(
                    "SELECT job_id, metric, value FROM results WHERE typeof(value) NOT IN ('real', 'integer', 'null')"):
                found.append(f"{self.path}: job {job_id}, metric {metric}: value {value!r} is not a number")
            for (job_id,) in conn.execute("SELECT DISTINCT job_id FROM results WHERE job_id NOT IN "
                                          "(SELECT job_id FROM jobs WHERE finished IS NOT NULL)"):
                found.append(f"{self.path}: rows of job {job_id}, which is not marked finished")
        except sqlite3.DatabaseError as exc:
            return [str(self._error(exc))]
        finally:
            conn.close()
        return found
