"""The results store (xadbench.store) and the run folder around it (run_folder.check_run,
save_job_result, run_grid's claims): rows stored whole or not at all, never twice; an older
release's results.csv imported or refused with one line; damaged stores, predictions and
leftovers found. Expectations are written out by hand or read back with plain sqlite3/csv."""
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from xadbench import files, run_folder, runner, store
from xadbench.cli import app
from xadbench.errors import XadError
from xadbench.files import Owner
from xadbench.run_folder import RESULT_COLUMNS
from xadbench.grid import run_grid
from xadbench.metrics.registry import list_metrics
from xadbench.runner import JobSpec
from xadbench.store import CLAIMED, FINISHED, ResultStore

COLUMNS = ["job_id", "blur", "metric", "value", "note"]


def row(job, metric="auc", value=0.5, **kw):
    return {"job_id": job, "blur": "none", "metric": metric, "value": value, "note": "", **kw}


def raw_rows(path, table="results"):
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


CLASSES = ("bottle", "cable", "capsule")
TREE: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def tiny_mvtec_tree(tmp_path_factory):
    """Three classes in the MVTec-AD layout, 16 x 16 noise images (4 train, 2 good and 2
    defective test images with masks): the cheapest real data a run can load."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mvtec")
    rng = np.random.default_rng(0)
    for name in CLASSES:
        images = [f"train/good/{i}.png" for i in range(4)] + [f"test/good/{i}.png" for i in range(2)]
        images += [f"test/crack/{i}.png" for i in range(2)]
        for file in images:
            (root / name / file).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / file)
        for i in range(2):
            mask = np.zeros((16, 16), np.uint8)
            mask[i * 4: i * 4 + 6, 3:9] = 255
            (root / name / "ground_truth" / "crack").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / name / "ground_truth" / "crack" / f"{i}_mask.png")
    TREE["root"] = str(root)
    return root


def spec(**kw):
    return runner.identify([JobSpec(**{"dataset": "mvtec", "root": TREE["root"], "class_name": CLASSES[0],
                                       "method": "pixelstats", "blur": ("none",), **kw})])[0]


# ---------------------------------------------------------------- the store itself
def test_a_job_is_stored_whole_or_not_at_all(tmp_path):
    results = ResultStore(tmp_path, COLUMNS).open()
    with pytest.raises(XadError, match="metric 'bad' has value 'abc', not a number"):
        results.add_job("a", [row("a", "auc"), row("a", "bad", "abc")], checkpoint=False)
    assert raw_rows(results.path) == [] and results.finished() == {}
    results.add_job("a", [row("a", "auc", 0.25), row("a", "ap", np.float32(0.5))], checkpoint=True)
    assert raw_rows(results.path) == [("a", "none", "auc", 0.25, ""), ("a", "none", "ap", 0.5, "")]
    assert results.finished() == {"a": True}


def test_a_row_is_never_stored_twice(tmp_path):
    results = ResultStore(tmp_path, COLUMNS).open()
    results.add_job("a", [row("a")], checkpoint=False)
    with pytest.raises(XadError, match="job a is already finished"):
        results.add_job("a", [row("a")], checkpoint=False)
    with pytest.raises(XadError, match="job b already has a row for blur 'none', metric 'auc'"):
        results.add_job("b", [row("b"), row("b")], checkpoint=False)
    with sqlite3.connect(results.path) as conn:  # the UNIQUE key holds whoever writes
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO results VALUES ('a', 'none', 'auc', 0.9, '')")
    assert raw_rows(results.path) == [("a", "none", "auc", 0.5, "")]


def test_the_store_uses_wal_and_a_busy_timeout(tmp_path):
    results = ResultStore(tmp_path, COLUMNS).open()
    with sqlite3.connect(results.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn = results._connect()
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (store.BUSY_TIMEOUT_S * 1000,)
    conn.close()


def test_a_store_of_an_older_version_gets_the_new_columns(tmp_path):
    ResultStore(tmp_path, COLUMNS).open().add_job("a", [row("a")], checkpoint=False)
    newer = ResultStore(tmp_path, [*COLUMNS, "ci_low"]).open()
    newer.add_job("b", [row("b", ci_low=0.25)], checkpoint=False)
    assert raw_rows(newer.path) == [("a", "none", "auc", 0.5, "", None), ("b", "none", "auc", 0.5, "", 0.25)]
    table = newer.read()
    assert list(table.columns) == [*COLUMNS, "ci_low"] and table["ci_low"].isna().tolist() == [True, False]


def test_read_equals_the_exported_csv_read_by_pandas(tmp_path):
    results = ResultStore(tmp_path, COLUMNS, text_columns=["note"]).open()
    results.add_job("a", [row("a", note=8), row("a", "ap", float("nan"), note="all")], checkpoint=False)
    results.export_csv()
    text = (tmp_path / "results.csv").read_text()
    assert text.splitlines() == ["job_id,blur,metric,value,note", "a,none,auc,0.5,8", "a,none,ap,,all"]
    table = results.read()
    assert table["note"].tolist() == ["8", "all"] and table["value"].iloc[0] == 0.5 and np.isnan(table["value"].iloc[1])


def test_an_unknown_result_field_is_named(tmp_path):
    results = ResultStore(tmp_path, COLUMNS).open()
    with pytest.raises(XadError, match="field\\(s\\) ci_high that are not results columns"):
        results.add_job("a", [row("a", ci_high=1.0)], checkpoint=False)


# ---------------------------------------------------------------- claims and processes
def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_process_alive_knows_dead_zombie_and_reused_pids():
    me = files.this_process()
    assert files.process_alive(me)
    assert not files.process_alive(Owner(me.host, dead_pid(), ""))
    assert not files.process_alive(Owner(me.host, me.pid, "1"))  # the PID of a process started at another time
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(200):
        if files._proc_stat(zombie.pid) is None or files._proc_stat(zombie.pid)[0] == "Z":
            break
        __import__("time").sleep(0.05)
    assert not files.process_alive(Owner(me.host, zombie.pid, ""))  # exited, not yet reaped
    zombie.wait()
    assert files.process_alive(Owner("another-host", dead_pid(), ""))  # cannot be asked


def test_a_claim_of_a_live_process_is_respected_and_of_a_dead_one_taken_over(tmp_path):
    results = ResultStore(tmp_path, COLUMNS).open()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with sqlite3.connect(results.path) as conn:
            conn.execute("INSERT INTO jobs (job_id, host, pid, start) VALUES (?, ?, ?, ?)",
                         ("live", files.this_process().host, sleeper.pid, files._proc_stat(sleeper.pid)[1]))
            conn.execute("INSERT INTO jobs (job_id, host, pid, start) VALUES (?, ?, ?, '')",
                         ("dead", files.this_process().host, dead_pid()))
        assert results.claim("live") == Owner(files.this_process().host, sleeper.pid, files._proc_stat(sleeper.pid)[1])
        assert results.claim("dead") == CLAIMED and results.claim("new") == CLAIMED
    finally:
        sleeper.kill()
        sleeper.wait()
    assert results.claim("live") == CLAIMED
    results.add_job("new", [row("new")], checkpoint=False)
    assert results.claim("new") == FINISHED
    results.release("dead")
    assert set(raw_rows(results.path, "jobs")[i][0] for i in range(2)) == {"live", "new"}


# ---------------------------------------------------------------- the CSV of the current release
def old_release_folder(tmp_path, specs):
    """What the current release leaves: results.csv (header + rows), predictions, no store."""
    folder = tmp_path / "old"
    rows = []
    for s in specs:
        result = runner.run_job(s)
        run_folder.save_predictions(folder / "predictions" / f"{s.job_id}.npz", result.predictions)
        rows += result.rows
    folder.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=RESULT_COLUMNS).to_csv(folder / "results.csv", index=False)
    return folder, rows


def test_a_folder_of_the_current_release_is_imported_and_resumed(tmp_path):
    specs = [spec(), spec(class_name=CLASSES[1])]
    folder, rows = old_release_folder(tmp_path, specs[:1])
    before = (folder / "results.csv").read_text()
    assert run_folder.read_results(folder)["value"].tolist() == [r["value"] for r in rows]
    assert not (folder / "results.sqlite").exists(), "reading must not write"
    table = run_grid(specs, folder)
    assert (folder / "results.sqlite").is_file() and run_folder.finished_jobs(folder) == {s.job_id for s in specs}
    assert table["value"].tolist()[: len(rows)] == [r["value"] for r in rows]
    assert (folder / "results.csv").read_text().startswith(before)


def cut_row(text, line, keep):
    """Line `line` (1-based) cut after `keep` characters, the next row glued onto it."""
    lines = text.splitlines(True)
    lines[line - 1] = lines[line - 1][:keep]
    return "".join(lines)


@pytest.mark.parametrize("damage, message", [
    (lambda t: t[:-30], r"results.csv: the last line is incomplete \(a torn write\)"),
    (lambda t: cut_row(t, 2, 8), r"results.csv, line 2: job_id '\w{24}' is not 16 hex digits"),
    (lambda t: cut_row(t, 2, 30), r"results.csv, line 2: \d+ fields where the header has " + str(len(RESULT_COLUMNS))),
    (lambda t: cut_row(t, 3, 100), r"results.csv, line 3: \d+ fields where the header has " + str(len(RESULT_COLUMNS))),
    (lambda t: t.replace("job_id,", "job_id,extra,", 1), "results.csv: unknown column\\(s\\) extra in the header"),
    (lambda t: t.replace(",image_auc,0.", ",image_auc,x0.", 1), r"results.csv, line 2: value 'x0.\d+' is not a number"),
    # the header, the job's rows (one per headline metric), then the repeated first row
    (lambda t: t + t.splitlines(True)[1],
     rf"results.csv, line {len(list_metrics(headline=True)) + 2}: a second row for job \w+, blur none, metric image_auc"),
])
def test_a_damaged_csv_of_the_current_release_is_refused_with_one_line(tmp_path, damage, message):
    folder, _ = old_release_folder(tmp_path, [spec()])
    path = folder / "results.csv"
    path.write_text(damage(path.read_text()))
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(XadError, match=message):
        run_grid([spec()], folder)
    assert sorted(p.name for p in folder.iterdir()) == before, "a refused import must leave the folder as it was"


# ---------------------------------------------------------------- the run folder
@pytest.mark.slow
def test_config_json_keeps_every_invocation(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"command": "run", "argv": ["older"]}))
    run_folder.write_config(tmp_path, {"command": "run", "argv": ["first"]})
    run_folder.write_config(tmp_path, {"command": "run", "argv": ["second"]})
    config = json.loads((tmp_path / "config.json").read_text())
    assert [c["argv"] for c in config] == [["older"], ["first"], ["second"]] and config[2]["pid"] == os.getpid()


def test_leftover_temporary_files_of_dead_writers_are_removed_at_run_start(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "predictions").mkdir()
        dead = tmp_path / "predictions" / f".x.npz.{dead_pid()}.k2j_x9.tmp"
        older = tmp_path / ".results.csv.abc123.tmp"  # an older release: no PID in the name
        live = tmp_path / f".results.csv.{sleeper.pid}.q1w2e3.tmp"
        for path in (dead, older, live):
            path.write_text("half")
        run_grid([spec()], tmp_path)
        assert not dead.exists() and not older.exists() and live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def invoke(*args):
    return CliRunner().invoke(app, list(args))


@pytest.mark.slow
def test_check_names_a_truncated_predictions_file_and_run_reruns_its_job(tmp_path):
    specs = [spec(), spec(class_name=CLASSES[1])]
    first = run_grid(specs, tmp_path)
    npz = tmp_path / "predictions" / f"{specs[1].job_id}.npz"
    npz.write_bytes(npz.read_bytes()[:-200])
    (tmp_path / "predictions" / f"{specs[0].job_id}.npz").unlink()
    result = invoke("check", str(tmp_path))
    lines = result.output.splitlines()
    assert result.exit_code == 1 and len(lines) == 2, result.output
    assert lines[0].startswith(f"{tmp_path}/predictions/{specs[0].job_id}.npz: missing; `xadbench run` reruns job")
    assert lines[1].startswith(f"{npz}: unreadable (BadZipFile")
    with pytest.warns(UserWarning, match="unreadable"):
        again = run_grid(specs, tmp_path)
    assert invoke("check", str(tmp_path)).output == f"{tmp_path}: ok, 2 finished jobs\n"
    assert again.drop(columns=["fit_s", "predict_s"]).sort_values("job_id").reset_index(drop=True).equals(
        first.drop(columns=["fit_s", "predict_s"]).sort_values("job_id").reset_index(drop=True))


def test_check_reads_every_array_of_a_predictions_file(tmp_path):
    run_grid([spec()], tmp_path)
    npz = tmp_path / "predictions" / f"{spec().job_id}.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the compressed arrays
    npz.write_bytes(bytes(data))
    problems = run_folder.check_run(tmp_path)
    assert len(problems) == 1 and problems[0].job_id == spec().job_id and "unreadable" in problems[0].message


def test_a_damaged_store_is_one_line_naming_it(tmp_path):
    first = run_grid([spec()], tmp_path)
    path = tmp_path / "results.sqlite"
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\0" * 4096 + data[4196:])  # a torn page
    result = invoke("check", str(tmp_path))
    assert result.exit_code == 1 and result.output.startswith(f"{path}: "), result.output
    path.write_bytes(b"not a database at all" * 100)
    for result in (invoke("check", str(tmp_path)), invoke("report", str(tmp_path)),
                   invoke(*run_args(), "--out", str(tmp_path))):
        lines = result.output.splitlines()
        assert result.exit_code == 1 and len(lines) == 1, result.output
        assert f"{path}: damaged results store (file is not a database); move it aside" in lines[0]
    path.rename(tmp_path / "damaged.sqlite")  # what the message says: the exported CSV is imported
    assert comparable(run_grid([spec()], tmp_path)).equals(comparable(first))


# ---------------------------------------------------------------- fault injection: real processes
# Runs are separate processes forked from the test process (xadbench imported once, so each
# costs well under a second), and they die by SIGKILL: nothing is cleaned up, as after kill -9.
SEEDS = (0, 1)  # with CLASSES: 6 pixelstats jobs
KILL_POINTS = ("time", "predictions", "rows", "commit", "export")


def run_args():
    return ["run", "--methods", "pixelstats", "--dataset", "mvtec", "--root", TREE["root"], "--classes",
            ",".join(CLASSES), "--seeds", ",".join(map(str, SEEDS)), "--blur", "none", "--no-references", "--no-sanity", "--no-report"]


def grid_specs():
    return [spec(class_name=c, seed=s) for c in CLASSES for s in SEEDS]


def _die_after_call(owner, name, n):
    """Wrap owner.name so the process kills itself (SIGKILL) when the n-th call returns."""
    original, calls = getattr(owner, name), [0]

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(owner, name, wrapper)


def _die_inside_export(n):
    """Kill the process while its n-th CSV export is written (the temporary file full, not renamed)."""
    from contextlib import contextmanager

    original, calls = store.atomic_write, [0]

    @contextmanager
    def wrapper(path, mode="w"):
        with original(path, mode) as handle:
            yield handle
            calls[0] += 1
            if calls[0] == n:
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
    store.atomic_write = wrapper


def _cli_run(out, log, kill_point="", n=0):
    """`xadbench run` of the grid in this process, optionally set to die at a point of the store's
    real write path: after the n-th predictions file, inside the transaction after the n-th
    row, after the n-th commit (before the export), or inside the n-th export."""
    import torch

    torch.set_num_threads(1)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(fd, "w", buffering=1)  # not pytest's capture of the parent
    if kill_point == "predictions":
        _die_after_call(runner, "save_predictions", n)
    elif kill_point == "rows":
        _die_after_call(ResultStore, "_insert", n)
    elif kill_point == "commit":
        _die_after_call(ResultStore, "add_job", n)
    elif kill_point == "export":
        _die_inside_export(n)
    sys.argv = ["xadbench", *run_args(), "--out", str(out)]
    from xadbench.cli import main

    main()


@pytest.fixture(scope="module")
def processes():
    """Processes forked from this one (xadbench already imported); each child computes with
    one thread, as PyTorch's own forked DataLoader workers do."""
    import multiprocessing

    return multiprocessing.get_context("fork")


def run_grid_one_thread(specs, out):
    """run_grid in this process with one thread, as the forked runs compute (`_cli_run`): results
    are bit-identical only for a fixed thread count, and the `threads` column records it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_grid(specs, out)
    finally:
        torch.set_num_threads(before)


def comparable(table):
    """The results without the timings, in a fixed order."""
    return table.drop(columns=["fit_s", "predict_s"]).sort_values(["job_id", "metric"]).reset_index(drop=True)


@pytest.mark.slow
def test_runs_killed_at_random_points_resume_to_identical_results(tmp_path, processes):
    """Runs killed (SIGKILL) at random times and inside the store's write path, each followed
    by a rerun, until 10 have died; every folder a rerun completes must equal an undisturbed
    run (timings aside), with no duplicate, no leftover temporary file and a clean check."""
    import random
    import time

    reference = comparable(run_grid_one_thread(grid_specs(), tmp_path / "reference"))
    log, rng = tmp_path / "log.txt", random.Random(10)
    kills, folders, out = [], 0, None
    while len(kills) < 10:
        if out is None:
            folders, out = folders + 1, tmp_path / f"killed-{folders}"
        point = KILL_POINTS[len(kills) % len(KILL_POINTS)]
        n = rng.randint(1, 4 if point == "rows" else 2)
        child = processes.Process(target=_cli_run, args=(out, log, "" if point == "time" else point, n))
        child.start()
        if point == "time":
            time.sleep(rng.uniform(0.05, 1.0))
            child.kill()
        child.join(60)
        assert child.exitcode in (0, -signal.SIGKILL), log.read_text()[-2000:]
        if child.exitcode == -signal.SIGKILL:
            kills.append(f"{point}:{n}")
            # the store is always sound; a kill between a job's commit and the export leaves results.csv
            # behind the store, which check names and the rerun writes again (stale_export)
            assert not [p for p in run_folder.check_run(out) if p.job_id is None and not p.stale_export]
            partial = run_folder.read_results(out)
            assert not partial.duplicated(["job_id", "blur", "metric"]).any()
            assert set(partial.groupby("job_id").size()) <= {len(list_metrics(headline=True))}  # all or none
        else:  # this rerun completed the grid
            assert_complete(out, reference)
            out = None
    if out is not None:
        _cli_run_here(out)
        assert_complete(out, reference)
    print(f"{len(kills)} kills over {folders} run folders, all resumed to identical results: {' '.join(kills)}")


def assert_complete(out, reference):
    final = run_folder.read_results(out)
    assert comparable(final).equals(reference)
    exported = pd.read_csv(out / "results.csv", dtype={"job_id": str})
    assert exported[list(store.KEY) + ["value"]].equals(final[list(store.KEY) + ["value"]])
    assert run_folder.check_run(out) == [] and not list(out.rglob("*.tmp"))


def _cli_run_here(out):
    """The CLI run in this process, with one thread like the forked runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, [*run_args(), "--out", str(out)])
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_two_runs_into_one_folder_share_the_jobs(tmp_path, processes):
    out = tmp_path / "shared"
    logs = [tmp_path / "a.txt", tmp_path / "b.txt"]
    children = [processes.Process(target=_cli_run, args=(out, log)) for log in logs]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    texts = [log.read_text() for log in logs]
    assert [c.exitcode for c in children] == [0, 0], texts
    jobs = sorted(f"mvtec/{s.class_name} pixelstats seed {s.seed}" for s in grid_specs())

    def reported(text, *kinds):  # "done  1/6 mvtec/bottle pixelstats seed 0: fit 0s, ..."
        return sorted(re.sub(r"^\d+/\d+ ", "", line[6:]).split(":")[0]
                      for line in text.splitlines() if line[:6] in kinds)
    assert sorted(reported(texts[0], "done  ") + reported(texts[1], "done  ")) == jobs  # each trained once
    assert all(reported(text, "done  ", "skip  ") == jobs for text in texts)  # each run saw the grid complete
    table = run_folder.read_results(out)
    assert len(table) == 6 * len(list_metrics(headline=True)) and not table.duplicated(["job_id", "blur", "metric"]).any()
    assert comparable(table).equals(comparable(run_grid_one_thread(grid_specs(), tmp_path / "alone")))


# ---------------------------------------------------------------- a store that is not xadbench's
def foreign_store(path):
    """Another tool's SQLite file under the store's name: a `results` table of its own."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, score REAL)")
        conn.execute("INSERT INTO results (score) VALUES (0.5)")
    return path.read_bytes()


def test_a_foreign_store_is_refused_before_anything_is_written(tmp_path):
    """`run`, `report`, `check` and read_results each refuse it in one line, the file stays
    byte for byte as it was (no ALTER TABLE, no WAL mode), and nothing else appears."""
    before = foreign_store(tmp_path / "results.sqlite")
    expected = (f"{tmp_path / 'results.sqlite'}: not an xadbench results store (it holds the table(s) results "
                "and schema version 0); move it aside or choose another --out folder")
    for result in (invoke(*run_args(), "--out", str(tmp_path)), invoke("report", str(tmp_path)),
                   invoke("check", str(tmp_path))):
        lines = result.output.splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].endswith(expected), result.output
    with pytest.raises(XadError) as info:
        run_folder.read_results(tmp_path)
    assert str(info.value) == expected
    assert (tmp_path / "results.sqlite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]
    assert raw_rows(tmp_path / "results.sqlite") == [(1, 0.5)]


def test_an_older_store_without_a_column_reads_it_as_missing(tmp_path):
    """A column added after the store was written reads as missing, not as its own name
    (SQLite takes a double-quoted unknown name for a string literal)."""
    ResultStore(tmp_path, COLUMNS).open().add_job("a", [row("a")], checkpoint=False)
    table = ResultStore(tmp_path, [*COLUMNS, "device"]).read()
    assert list(table.columns) == [*COLUMNS, "device"] and table["device"].isna().all()
    assert table["value"].tolist() == [0.5]


# ---------------------------------------------------------------- predictions filed under their job
def test_swapped_predictions_are_named_by_check_report_and_evaluate(tmp_path):
    """Two jobs' predictions files swapped: each names the job it belongs to, so `check` lists
    both, and `report` and `evaluate` refuse in one line instead of showing one method's maps
    under the other's name."""
    jobs = [spec(), spec(method="centre")]
    run_grid(jobs, tmp_path)
    first, second = (tmp_path / "predictions" / f"{s.job_id}.npz" for s in jobs)
    with np.load(first) as arrays:  # the records the file carries, read independently
        assert str(arrays["job_id"]) == jobs[0].job_id
        assert str(arrays["spec_digest"]) == __import__("hashlib").sha256(str(arrays["spec"]).encode()).hexdigest()
    data = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(data)
    result = invoke("check", str(tmp_path))
    lines = result.output.splitlines()
    assert result.exit_code == 1 and len(lines) == 2, result.output
    assert lines[0] == (f"{first}: holds the predictions of job {jobs[1].job_id} (centre on {CLASSES[0]}), not of job "
                        f"{jobs[0].job_id} it is filed under; `xadbench run` reruns job {jobs[0].job_id}")
    expected = (f"{first}: holds the predictions of job {jobs[1].job_id} (centre on {CLASSES[0]}), not of job "
                f"{jobs[0].job_id} it is filed under; delete it and rerun the job")
    for result in (invoke("report", str(tmp_path)), invoke("evaluate", str(tmp_path))):
        lines = result.output.splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].endswith(expected), result.output


def test_predictions_whose_spec_was_edited_are_named(tmp_path):
    run_grid([spec()], tmp_path)
    path = tmp_path / "predictions" / f"{spec().job_id}.npz"
    with np.load(path) as arrays:
        saved = {k: arrays[k] for k in arrays.files}
    saved["spec"] = np.array(str(saved["spec"]).replace('"seed": 0', '"seed": 1'))
    np.savez_compressed(path, **saved)
    problems = run_folder.check_run(tmp_path)
    assert [p.message for p in problems] == [f"{path}: its spec does not match its digest (the file was edited); "
                                            f"`xadbench run` reruns job {spec().job_id}"]


# ---------------------------------------------------------------- results.csv against its store
def test_a_csv_that_differs_from_its_store_is_named_and_the_next_run_rewrites_it(tmp_path):
    run_grid([spec()], tmp_path)
    path = tmp_path / "results.csv"
    exported = path.read_text()
    lines = exported.splitlines()
    header = lines[0].split(",")
    at = next(i for i, line in enumerate(lines) if ",image_auc," in line)
    fields = lines[at].split(",")
    fields[header.index("value")] = "0.99"
    lines[at] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    result = invoke("check", str(tmp_path))
    assert result.exit_code == 1 and result.output.splitlines() == [
        f"{path}: line {at + 1} differs from the rows of results.sqlite, which reports show (edited by hand?); "
        "the next `xadbench run` into the folder writes it again from the store"], result.output
    with pytest.warns(UserWarning, match=f"line {at + 1} differs"):
        run_grid([spec()], tmp_path)
    assert path.read_text() == exported and run_folder.check_run(tmp_path) == []


def test_a_csv_imported_alone_has_its_values_checked_against_the_metrics_range(tmp_path):
    """A folder with only results.csv: a value outside its metric's declared range (AUC 7.5)
    is refused by `check` and by `run` before anything is written; a metric that declares no
    range (one a plugin adds) is taken as it is."""
    job = "a" * 16
    header = ",".join(RESULT_COLUMNS)

    def csv_row(metric, value):
        values = {"job_id": job, "blur": "none", "metric": metric, "value": value}
        return ",".join(str(values.get(c, "")) for c in RESULT_COLUMNS)

    path = tmp_path / "results.csv"
    path.write_text(f"{header}\n{csv_row('image_auc', 0.5)}\n{csv_row('my_score', 7.5)}\n")
    assert run_folder.read_results(tmp_path)["value"].tolist() == [0.5, 7.5]
    path.write_text(f"{header}\n{csv_row('image_auc', 7.5)}\n")
    expected = f"{path}, line 2: image_auc = 7.5 is outside its range [0, 1]; {store.FIX_ROW}"
    for result in (invoke("check", str(tmp_path)), invoke(*run_args(), "--out", str(tmp_path))):
        lines = result.output.splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].endswith(expected), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]
