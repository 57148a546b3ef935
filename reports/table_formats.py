"""How a `reports.tables.ResultTable` is written and shown: CSV, LaTeX and the terminal.

Each table is written as CSV (class rows and Mean at full precision: "<method>" holds the value,
"<method> std" the std over seeds, "<method> low"/"high"/"mark" the bootstrap) and as LaTeX to
RUN_DIR/tables/: pandas' `Styler.to_latex` with booktabs rules and siunitx `S` columns, so the
numbers align on the decimal point and the tables compile with the LaTeX packages booktabs and
siunitx (v3). `summary_table` is the terminal view.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table as RichTable

from xadbench.files import atomic_write
from xadbench.metrics.registry import metric_label
from xadbench.registry import datasets
from xadbench.reports.tables import (
    ACROSS_DATASETS,
    BEST,
    BLUR_WORDS,
    MEAN,
    PROTOCOL_WORDS,
    SIGMA,
    TABLE_KEYS,
    TIED,
    ResultTable,
)
from xadbench.sanity import MEAN_MAP_MARGIN
from xadbench.terminal import literal

FLAG_COLUMN = "not above own mean map"
DIGITS = 3
PAPER_DIGITS = 2


def write_tables(run_dir: Path, tables: Sequence[ResultTable]) -> list[Path]:
    """Write tables as CSV and LaTeX to RUN_DIR/tables/ (each file atomically)."""
    paths = []
    for table in tables:
        for suffix, text in ((".csv", to_csv(table)), (".tex", to_latex(table))):
            path = Path(run_dir) / "tables" / f"{table.slug}{suffix}"
            with atomic_write(path) as handle:
                handle.write(text)
            paths.append(path)
    return paths


def to_csv(table: ResultTable) -> str:
    """The class rows and Mean (σ follows from the class rows; the Mean's interval does not); per
    method its value, "<method> std" (over seeds, ddof=1; empty for a single seed), and where
    the bootstrap gives them "<method> low", "<method> high" and "<method> mark" ("best",
    "tied" or empty); then the published "(paper)" columns."""
    rows = [r for r in table.mean.index if r != SIGMA]
    frame = pd.DataFrame(index=rows)
    for column in table.mean.columns:
        frame[column] = table.mean.loc[rows, column]
        frame[f"{column} std"] = table.std.loc[rows, column]
        if table.low is not None:
            frame[f"{column} low"] = table.low.loc[rows, column]
            frame[f"{column} high"] = table.high.loc[rows, column]
            frame[f"{column} mark"] = [table.mark(r, column) for r in rows]
    frame = pd.concat([frame, table.paper.loc[rows]], axis=1)
    if table.flags:
        frame[FLAG_COLUMN] = [",".join(table.flags.get(row, [])) for row in frame.index]
    return frame.rename_axis(row_header(table).lower()).reset_index().to_csv(index=False)


def format_value(value: float, digits: int = DIGITS, missing: str = "–") -> str:
    return missing if pd.isna(value) else f"{value:.{digits}f}"


def cell_text(table: ResultTable, row: str, column: str) -> str:
    """One cell as shown: the value, its bootstrap interval in the table's style where it has one
    ("0.912 [0.890, 0.931]" or "0.912 ± 0.021"), and the std over seeds in parentheses where
    there are several seeds ("0.912 [0.890, 0.931] (0.013)"); marks are the caller's."""
    value = table.mean.at[row, column]
    if pd.isna(value):
        return "–"
    bounds = table.interval(row, column)
    text = format_value(value) if bounds is None else format_interval(value, *bounds, table.style)
    std = table.std.at[row, column] if row in table.std.index else np.nan
    return text + ("" if pd.isna(std) else f" ({std:.{DIGITS}f})")


def format_interval(value: float, low: float, high: float, style: str = "interval", *, digits: int = DIGITS) -> str:
    """"0.912 [0.890, 0.931]" (style "interval") or "0.912 ± 0.021" (style "halfwidth": half the
    interval's width, which need not be centred on the value)."""
    if style == "interval":
        return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{value:.{digits}f} ± {(high - low) / 2:.{digits}f}"


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def row_header(table: ResultTable) -> str:
    """What a table's rows are: defect types, data sets (a cross-data-set table) or classes."""
    return "Defect type" if table.by_defect else "Data set" if table.key["dataset"] == ACROSS_DATASETS else "Class"


def tex_escape(text: str) -> str:
    """Text safe to typeset: LaTeX's special characters escaped."""
    return "".join(_TEX_SPECIALS.get(c, c) for c in str(text))


def caption_words(table: ResultTable) -> str:
    """What a table shows, in words: metric, data set, protocol, preset with its image size, blur
    policy, seeds, and where the paper's columns come from."""
    key = table.key
    dataset = Path(key["dataset"]).name
    size = table.image_size
    seeds = len(table.seeds)
    spread = ("one seed, so no spread over seeds is shown" if seeds == 1
              else f"mean over {seeds} seeds, their sample standard deviation in parentheses")
    if table.seeds_per_column:
        per_column = pd.Series(table.seeds_per_column)
        usual = per_column.mode()
        if len(usual) == 1 and (per_column == usual[0]).sum() > 1:  # "Grad 3, the others 1"
            listed = per_column[per_column != usual[0]]
            counts = ", ".join([*(f"{c} {n}" for c, n in listed.items()), f"the others {usual[0]}"])
        else:
            counts = ", ".join(f"{c} {n}" for c, n in per_column.items())
        spread = (f"mean over each method's seeds ({counts}), the sample standard deviation over seeds in "
                  f"parentheses where there are several")
    text = (f"{metric_label(key['metric'])} on {datasets.display_name(dataset)}, "
            f"{PROTOCOL_WORDS.get(key['protocol'], key['protocol'] + ' protocol')}, "
            f"{key['preset']} preset{f' ({size} px images)' if size else ''}, {BLUR_WORDS.get(key['blur'], 'blur ' + key['blur'])}; "
            f"{spread}." + ("" if table.by_defect else " Mean and σ: over the data sets, each one's value its Mean "
                                         "over its classes." if key["dataset"] == ACROSS_DATASETS
                                  else " Mean and σ: over the classes."))
    competing = table.mean.shape[1] - len(table.references)
    if table.low is not None:
        rows = ("each defect type's anomalous images with all nominal images of its class" if table.by_defect
                else "per class; the Mean's resamples average the classes' resamples")
        shown = "[low, high]" if table.style == "interval" else "± half the width"
        text += (f" Each value comes with {shown} of its {table.confidence:.0%} percentile interval over "
                 f"{table.n_resamples} stratified bootstrap resamples of the test images ({rows}"
                 f"{'; a resample averages the seeds' if seeds > 1 else ''}), computed from the saved maps at the "
                 "model's resolution (results.csv's pixel metrics are at the masks' resolution).")
        if competing > 1:
            text += (" Bold: the best method, whose paired bootstrap difference to every other method excludes 0; "
                     "underlined: the best and the methods not significantly below it (no significant best).")
    elif competing > 1:
        text += " No bootstrap for this metric (or no saved predictions), so no method is marked best."
    if table.paper_tables:
        text += (f" Columns marked (paper): published in Liznerski et al., ICLR 2021, "
                 f"{', '.join(table.paper_tables)}; their Mean and σ are over the classes shown.")
    if table.setup_notes:
        text += " Our setup differs from the paper's: " + " ".join(table.setup_notes)
    return text


def _caption(table: ResultTable) -> str:
    """`caption_words` as LaTeX: specials escaped, ± and σ in math mode."""
    parts = re.split(r"([±σ])", caption_words(table))
    return "".join({"±": "$\\pm$", "σ": "$\\sigma$"}.get(p, tex_escape(p)) for p in parts)


#: The LaTeX packages a written table needs (siunitx v3: its `S` columns align the numbers on the
#: decimal point and typeset "0.912 \pm 0.013" as a value with its uncertainty).
LATEX_PACKAGES = r"\usepackage{booktabs} \usepackage{siunitx}"
#: Options of every `S` column: bold set by the Styler (\bfseries) is detected, text mode keeps
#: the body font.
SIUNITX_OPTIONS = "detect-weight, mode=text"
#: A cell without a value: braced, so an `S` column reads it as text, not a number.
LATEX_MISSING = "{--}"
LATEX_FLAG = "$^\\dagger$"
BOLD = "bfseries: ;"  # Styler props: \bfseries before the cell


def siunitx_number(value: float, uncertainty: float = np.nan, *, after: str = "", underline: bool = False,
                   digits: int = DIGITS) -> str:
    """A cell of an `S` column: "0.912" or "0.912 \\pm 0.013" (the column prints the uncertainty
    as ± it), then `after` (LaTeX, e.g. an interval or a mark) as braced text; LATEX_MISSING
    without a value. An underlined cell is text to siunitx (\\num keeps the number's format) and
    leaves the decimal alignment."""
    if pd.isna(value):
        return LATEX_MISSING
    number = f"{value:.{digits}f}" + ("" if pd.isna(uncertainty) else f" \\pm {uncertainty:.{digits}f}")
    if underline:
        return f"{{\\underline{{\\num{{{number}}}{after}}}}}"
    return number + (f"{{{after}}}" if after else "")


def siunitx_column(values: pd.Series, uncertainty: bool = False, digits: int = DIGITS) -> str:
    """An `S` column whose table-format reserves room for the sign, integer digits and decimals
    of `values` (and a separately printed uncertainty)."""
    finite = pd.to_numeric(values, errors="coerce").dropna()
    integers = len(str(int(finite.abs().max()))) if len(finite) else 1
    sign = "-" if (finite < 0).any() else ""
    layout = f"{sign}{integers}.{digits}" + (f"({digits})" if uncertainty else "")
    separate = ", uncertainty-mode=separate" if uncertainty else ""
    return f"S[table-format={layout}{separate}, {SIUNITX_OPTIONS}]"


def latex_float(cells: pd.DataFrame, styles: pd.DataFrame, *, header: str, column_formats: list[str],
                references: int, caption: str, label: str, notes: list[str], source: str) -> str:
    """A table float rendered by pandas' `Styler.to_latex`: booktabs rules (hrules), siunitx `S`
    columns (`column_formats`, one per column of `cells`), the row names and column labels
    escaped by the Styler, `styles` (Styler props per cell, e.g. BOLD) as highlighting, the first
    `references` columns grouped under "References" and the rest under "Methods", a rule above
    the Mean row, and `notes` (LaTeX) under the tabular. `cells` hold siunitx cell text
    (`siunitx_number`), `caption` is LaTeX already."""
    frame = cells.astype(object).copy()
    styles = styles.astype(object).reindex(index=cells.index, columns=cells.columns, fill_value="")
    frame.insert(0, header, [str(name) for name in cells.index])
    styles.insert(0, header, "")
    grouped = 0 < references < cells.shape[1]
    if grouped:
        top = ["", *["References"] * references, *["Methods"] * (cells.shape[1] - references)]
        frame.columns = styles.columns = pd.MultiIndex.from_arrays([top, list(frame.columns)])
    frame.index = styles.index = pd.RangeIndex(len(frame))
    names = frame.columns[0]
    styler = (frame.style.hide(axis="index")
              .format(lambda name: "$\\sigma$" if name == SIGMA else name, escape="latex", subset=[names])
              .format_index(escape="latex", axis=1)
              .apply(lambda _: styles, axis=None))
    latex = styler.to_latex(column_format="l" + "".join(column_formats), hrules=True, siunitx=True,
                            caption=caption, label=label, position="htbp", position_float="centering",
                            multicol_align="c", environment="table")
    lines = latex.splitlines()
    if grouped:  # a rule under each group's label, as booktabs sets it
        span = cells.shape[1] - references
        lines.insert(lines.index("\\toprule") + 2, f"\\cmidrule(lr){{2-{references + 1}}}"
                                                   f"\\cmidrule(lr){{{references + 2}-{references + 1 + span}}}")
    mean_row = next((i for i, line in enumerate(lines) if line.startswith(f"{MEAN} & ")), None)
    if mean_row is not None:
        lines.insert(mean_row, "\\midrule")
    lines[lines.index("\\end{table}"):lines.index("\\end{table}")] = notes
    return "\n".join([f"% Written by xadbench from {source}. Needs {LATEX_PACKAGES}.", *lines, ""])


RICH_MARKS = {BEST: "[bold]%s[/bold]", TIED: "[underline]%s[/underline]"}


def latex_cell(table: ResultTable, row: str, column: str) -> str:
    """One of our cells for an `S` column (`siunitx_number`): the value (with ± half the interval's
    width as its uncertainty in the "halfwidth" style), then as text the interval ("interval"
    style), the std over seeds in parentheses and † where `flags` says so; underlined in a tied
    group (bold, for the significantly best, is the Styler's)."""
    bounds = table.interval(row, column)
    halfwidth = (bounds[1] - bounds[0]) / 2 if bounds and table.style == "halfwidth" else np.nan
    after = f"\\,[{bounds[0]:.{DIGITS}f}, {bounds[1]:.{DIGITS}f}]" if bounds and table.style == "interval" else ""
    std = table.std.at[row, column] if row in table.std.index else np.nan
    after += "" if pd.isna(std) else f" ({std:.{DIGITS}f})"
    after += LATEX_FLAG if column in table.flags.get(row, []) else ""
    return siunitx_number(table.mean.at[row, column], halfwidth, after=after, underline=table.mark(row, column) == TIED)


def to_latex(table: ResultTable) -> str:
    """The table as a booktabs float with decimal-aligned siunitx columns (`latex_float`): our
    columns as `latex_cell`, the significantly best of a row bold, then the paper's."""
    ours, published = list(table.mean.columns), list(table.paper.columns)
    cells = pd.DataFrame(index=table.mean.index, columns=ours + published, dtype=object)
    for row in table.mean.index:
        for column in ours:
            cells.at[row, column] = latex_cell(table, row, column)
        # Published class values keep the paper's two decimals; our Mean and σ over them do not.
        digits = DIGITS if row in (MEAN, SIGMA) else PAPER_DIGITS
        for column in published:
            cells.at[row, column] = siunitx_number(table.paper.at[row, column], digits=digits)
    styles = pd.DataFrame({c: [BOLD if table.mark(r, c) == BEST else "" for r in table.mean.index] for c in ours},
                          index=table.mean.index)
    halfwidths = table.style == "halfwidth" and table.low is not None
    formats = [siunitx_column(table.mean[c], uncertainty=halfwidths and table.low[c].notna().any()) for c in ours]
    formats += [siunitx_column(table.paper[c]) for c in published]
    notes = []
    if any(table.flags.values()):
        notes.append(f"\\par\\smallskip{{\\footnotesize $^\\dagger$ not clearly above the method's own mean map "
                     f"over the test set (by less than {MEAN_MAP_MARGIN:g}): the map has not explained the images.}}")
    if any(table.mean[c].isna().all() for c in ours):
        notes.append("\\par{\\footnotesize -- : not applicable (no trained layers, or a score that ignores the pixels).}")
    return latex_float(cells, styles, header=row_header(table), column_formats=formats,
                       references=len(table.references), caption=_caption(table),
                       label=f"tab:xadbench-{re.sub(r'[^A-Za-z0-9]+', '-', table.slug)}", notes=notes,
                       source="the run's results and predictions")


def summary_row(table: ResultTable) -> str:
    """The row a one-line summary of a table shows: Mean, or the class of a one-class table."""
    classes = [r for r in table.mean.index if r not in (MEAN, SIGMA)]
    return classes[0] if len(classes) == 1 else MEAN


def summary_table(tables: list[ResultTable]) -> RichTable:
    """A compact terminal view: one line per table (defect-type tables left out) with the Mean
    row (the class of a one-class run) of every column, as the tables show it (interval, seed
    std, bold: significantly best, underlined: tied group); key parts shared by all tables go
    into the title."""
    def shown(key: str, table: ResultTable) -> str:
        return Path(table.key[key]).name if key == "dataset" else table.key[key]

    tables = [t for t in tables if not t.by_defect]
    shared = [k for k in TABLE_KEYS[:-1] if len({shown(k, t) for t in tables}) == 1]
    keys = [k for k in TABLE_KEYS if k not in shared]
    columns = list(dict.fromkeys(c for t in tables for c in [*t.mean.columns, *t.paper.columns]))
    context = ", ".join(f"{k} {shown(k, tables[0])}" for k in shared) if tables else ""
    tested = next((t for t in tables if t.low is not None), None)
    legend = ("no bootstrap intervals: nothing marked" if tested is None else
              f"{tested.confidence:.0%} bootstrap interval of {tested.n_resamples} resamples, (std over seeds); "
              "bold: significantly best, underlined: tied group")
    summary = RichTable(title=f"Mean over classes{': ' + context if context else ''} ({legend})")
    for name in ["row", *keys, *columns]:
        summary.add_column(name, justify="right" if name in columns else "left")
    for table in tables:
        row = summary_row(table)
        cells = []
        for column in columns:
            if column in table.mean.columns:
                cells.append(RICH_MARKS.get(table.mark(row, column), "%s") % cell_text(table, row, column))
            elif column in table.paper.columns:
                cells.append(format_value(table.paper.at[row, column], missing=""))
            else:
                cells.append("")
        summary.add_row(literal(row), *(literal(shown(k, table)) for k in keys), *cells)
    return summary
