"""Several data sets in one run, data set options, and the cross-data-set summary table."""
from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_industrial_datasets import make_btad, make_folder_masks, make_visa
from xadbench.cli import app
from xadbench.dataset_choices import DataChoice, data_choices
from xadbench.errors import XadError
from xadbench.reports.tables import ACROSS_DATASETS, MEAN, SIGMA, report_tables


def test_one_data_set_keeps_the_plain_options():
    assert data_choices(["mvtec"], ["/data/x=y"], ["a=1"], "bottle,wood") == [
        DataChoice("mvtec", "/data/x=y", (("a", "1"),), ("bottle", "wood"))]
    assert data_choices(["mvtec"], [], [], "all") == [DataChoice("mvtec", None, (), None)]


def test_several_data_sets_take_qualified_roots_options_and_classes():
    choices = data_choices(["mvtec,visa", "folder-masks"], ["visa=/v", "folder-masks=/f"],
                           ["folder-masks.abnormal=crack,scratch", "folder-masks.split_seed=3"],
                           "mvtec:bottle,visa:candle,folder-masks:parts")
    assert choices == [
        DataChoice("mvtec", None, (), ("bottle",)), DataChoice("visa", "/v", (), ("candle",)),
        DataChoice("folder-masks", "/f", (("abnormal", "crack,scratch"), ("split_seed", "3")), ("parts",))]


@pytest.mark.parametrize("args, message", [
    ((["mvtec,visa"], ["/data"], [], "all"), "--root '/data': with several data sets (mvtec, visa) give --root NAME=DIR"),
    ((["mvtec"], ["/a", "/b"], [], "all"), "--root '/b': that data set's root is given twice"),
    ((["mvtec,visa"], [], ["x.k=1"], "all"), "--dataset-option 'x.k=1': 'x' is not a data set of this run"),
    ((["mvtec"], [], ["novalue"], "all"), "--dataset-option 'novalue' is not KEY=VALUE"),
    ((["mvtec,visa"], [], [], "mvtec:bottle"), "--classes names no class of data set 'visa'"),
    ((["mvtec,visa"], [], [], "btad:01"), "--classes 'btad:01': 'btad' is not a data set of this run"),
    (([" , "], [], [], "all"), "--dataset is empty"),
])
def test_malformed_choices_are_one_line(args, message):
    with pytest.raises(XadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data_choices(*args)


@pytest.mark.slow
def test_a_run_over_two_data_sets_gives_a_table_each_and_the_summary(tmp_path):
    """VisA and BTAD replicas in one run: per data set its own table (its classes), and the
    cross-data-set table whose rows are each data set's mean over its classes, and their mean,
    computed here from results.csv by hand."""
    make_visa(tmp_path / "visa")
    make_btad(tmp_path / "btad")
    make_btad(tmp_path / "btad", "02", seed=7)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--methods", "pixelstats", "--dataset", "visa", "--dataset", "btad", "--root", f"visa={tmp_path / 'visa'}",
        "--root", f"btad={tmp_path / 'btad'}", "--no-references", "--no-sanity", "--no-report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv", dtype={"class": str})
    auc = results[results["metric"] == "pixel_auc"]  # differs between the classes, so a mix-up shows
    assert sorted(zip(auc["dataset"], auc["class"])) == [("btad", "01"), ("btad", "02"), ("visa", "candle"), ("visa", "pcb1")]
    per_set = auc.groupby("dataset")["value"].mean()
    assert auc.groupby("dataset")["value"].nunique().tolist() == [2, 2]
    tables = {(t.key["dataset"], t.key["metric"]): t for t in report_tables(out)}
    assert list(tables["visa", "pixel_auc"].mean.index) == ["candle", "pcb1", MEAN, SIGMA]
    across = tables[ACROSS_DATASETS, "pixel_auc"].mean["pixelstats"]
    assert list(across.index) == ["visa", "btad", MEAN, SIGMA]
    assert across["visa"] == pytest.approx(per_set["visa"]) and across["btad"] == pytest.approx(per_set["btad"])
    assert across[MEAN] == pytest.approx((per_set["visa"] + per_set["btad"]) / 2)
    assert across[SIGMA] == pytest.approx(abs(per_set["visa"] - per_set["btad"]) / 2 ** 0.5)


def test_one_data_set_has_no_summary_table(tmp_path):
    make_btad(tmp_path / "btad")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--methods", "pixelstats", "--dataset", "btad", "--root",
                                      str(tmp_path / "btad"), "--no-references", "--no-sanity", "--no-report",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {t.key["dataset"] for t in report_tables(out)} == {"btad"}


def test_folder_masks_from_the_cli_with_its_options(tmp_path):
    root = make_folder_masks(tmp_path / "parts")
    out = tmp_path / "run"
    args = ["run", "--methods", "pixelstats", "--dataset", "folder-masks", "--root", str(root), "--dataset-option",
            "abnormal=crack,scratch", "--dataset-option", "split_ratio=0.3", "--no-references", "--no-sanity",
            "--no-report", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv")
    assert set(results["class"]) == {"parts"} and int(results["n_test"].iloc[0]) == 3 + 3  # 30% of 10 good, 3 defects
    bad = CliRunner().invoke(app, [*args[:-2], "--dataset-option", "nromal=x", "--out", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "data set 'folder-masks' has no option 'nromal'; it has: normal, abnormal" in bad.output
    assert not (tmp_path / "bad").exists()


def test_a_config_file_names_several_data_sets_as_a_list_or_a_string(tmp_path):
    make_btad(tmp_path / "btad")
    make_visa(tmp_path / "visa")
    config = tmp_path / "run.toml"
    config.write_text(f'dataset = ["btad", "visa"]\nroot = ["btad={tmp_path / "btad"}", "visa={tmp_path / "visa"}"]\n'
                      'methods = "pixelstats"\nreferences = false\n')
    dry = CliRunner().invoke(app, ["run", "--config", str(config), "--dry-run", "--out", str(tmp_path / "run")])
    assert dry.exit_code == 0, dry.output
    assert [line.split()[2] for line in dry.output.splitlines() if line.startswith("to run")] == ["01", "candle", "pcb1"]
    config.write_text(f'dataset = "btad"\nroot = "{tmp_path / "btad"}"\nmethods = "pixelstats"\nreferences = false\n')
    dry = CliRunner().invoke(app, ["run", "--config", str(config), "--dry-run", "--out", str(tmp_path / "run")])
    assert dry.exit_code == 0, dry.output
    assert [line.split()[2] for line in dry.output.splitlines() if line.startswith("to run")] == ["01"]
