"""How a `reports.tables.ResultTable` is written and shown: CSV, LaTeX and the terminal.

Each table is written as CSV (class rows and Mean at full precision: "<method>" holds the value,
"<method> std" the std over seeds, "<method> low"/"high"/"mark" the bootstrap) and as LaTeX to
RUN_DIR/tables/: pandas' `Styler.to_latex` with booktabs rules and siunitx `S` columns, so the
numbers align on the decimal point and the tables compile with the LaTeX packages booktabs and
siunitx (v3). `summary_table` is the terminal view.
"""
from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
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
    GROUP_KEYS,
    HEADLINE_METRICS,
    MEAN,
    PROTOCOL_WORDS,
    SIGMA,
    TABLE_KEYS,
    TIED,
    ResultTable,
    options_suffix,
)
from xadbench.sanity import MEAN_MAP_MARGIN
from xadbench.terminal import literal

FLAG_COLUMN = "not above own mean map"
DIGITS = 3
PAPER_DIGITS = 2


def write_tables(run_dir: Path, tables: Sequence[ResultTable]) -> list[Path]:
    """Write each table as CSV and LaTeX, the main table (`main_table`) and the explanations the
    short captions leave out (`notes_text`) to RUN_DIR/tables/, each file atomically; file names
    carry the report's options (`ResultTable.file_stem`)."""
    texts = {}
    for table in tables:
        texts[f"{table.file_stem}.csv"], texts[f"{table.file_stem}.tex"] = to_csv(table), to_latex(table)
    if tables:
        options = options_suffix(tables[0].style, tables[0].compare)
        texts[f"main{options}.csv"], texts[f"main{options}.tex"] = main_table(tables)
        texts[notes_name(tables[0])] = notes_text(tables)
    paths = []
    for name, text in texts.items():
        path = Path(run_dir) / "tables" / name
        with atomic_write(path) as handle:
            handle.write(text)
        paths.append(path)
    return paths


def main_table(tables: Sequence[ResultTable]) -> tuple[str, str]:
    """The paper's Table 2 layout for the headline metrics (`HEADLINE_METRICS`): per data set,
    protocol, preset and blur policy one LaTeX table whose sections are the metrics, classes as
    rows with a Mean row, methods as columns; and all of it as one CSV (`to_csv` per table, with
    the table's key in front)."""
    groups: dict[tuple[str, ...], list[ResultTable]] = {}
    for table in tables:
        if table.key["metric"] in HEADLINE_METRICS and not table.by_defect:
            groups.setdefault(tuple(table.key[k] for k in GROUP_KEYS), []).append(table)
    latex, frames = [], []
    for group in groups.values():
        group.sort(key=lambda t: HEADLINE_METRICS.index(t.key["metric"]))
        sections = [table_section(t, tex_escape(metric_label(t.key["metric"]).split(" (")[0]))
                    for t in group]
        columns = list(dict.fromkeys(c for t in group for c in [*t.mean.columns, *t.paper.columns]))
        references = list(dict.fromkeys(c for t in group for c in t.references))
        first = group[0]
        stem = re.sub(r"[^A-Za-z0-9]+", "-", "-".join(first.slug.split("_")[:-1]))
        latex.append(latex_floats(sections, columns, references, header="Class",
                                  caption=_caption(short_caption(first, "Headline metrics")),
                                  label=f"tab:xadbench-main-{stem}", notes=table_notes(group),
                                  source="the run's results and predictions"))
        for table in group:
            frame = pd.read_csv(io.StringIO(to_csv(table)), keep_default_na=False)
            frames.append(pd.concat([pd.DataFrame({k: [table.key[k]] * len(frame) for k in TABLE_KEYS}), frame], axis=1))
    csv = pd.concat(frames, ignore_index=True).to_csv(index=False) if frames else ""
    return csv, "\n".join(latex)


def notes_name(table: ResultTable) -> str:
    """The notes file of a table's report options, e.g. notes.md or notes_ci-halfwidth.md."""
    return f"notes{options_suffix(table.style, table.compare)}.md"


def notes_text(tables: Sequence[ResultTable]) -> str:
    """tables/notes.md: what the short captions leave out (`caption_words`), each explanation once
    with the tables it belongs to."""
    explained: dict[str, list[str]] = {}
    for table in tables:
        explained.setdefault(caption_words(table, with_metric=False), []).append(f"{table.file_stem}.tex")
    lines = ["# What the tables show", ""]
    for text, names in explained.items():
        lines += [f"Tables {', '.join(names)} (and main.tex where it shows their metric):", "", text, ""]
    return "\n".join(lines)


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


def caption_words(table: ResultTable, with_metric: bool = True) -> str:
    """What a table shows, in words: metric (unless `with_metric` is False), data set, protocol,
    preset with its image size, blur policy, seeds, and where the paper's columns come from."""
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
    metric = f"{metric_label(key['metric'])} on " if with_metric else ""
    text = (f"{metric}{datasets.display_name(dataset)}, "
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
                 "model's resolution, as results.csv's values are.")
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


def short_caption(table: ResultTable, what: str | None = None) -> str:
    """A caption of at most 40 words (`what` the table shows, by default its metric): data set,
    protocol, preset, seeds and what the marks mean; the long explanation (`caption_words`) is
    written once, in tables/notes.md and the HTML page."""
    key = table.key
    dataset = Path(key["dataset"]).name
    what = what or metric_label(key["metric"]).split(" (")[0]
    size = f" ({table.image_size} px)" if table.image_size else ""
    seeds = len(table.seeds)
    text = (f"{what} on {datasets.display_name(dataset).split(' (')[0]}, {key['protocol']} protocol, "
            f"{key['preset']} preset{size}, {seeds} seed{'s' if seeds > 1 else ''}.")
    if table.low is not None:
        shown = "under each value" if table.style == "interval" else "± half its width"
        text += f" {table.confidence:.0%} bootstrap interval {shown}"
        text += " (std over seeds)." if seeds > 1 else "."
        if table.mean.shape[1] - len(table.references) > 1:
            text += " Bold: significantly best; underlined: tied."
    if table.paper_tables:
        text += " (paper): published values."
    return text + f" Details: {notes_name(table)}."


def _caption(text: str) -> str:
    """Caption text as LaTeX: specials escaped, ± and σ in math mode."""
    parts = re.split(r"([±σ])", text)
    return "".join({"±": "$\\pm$", "σ": "$\\sigma$"}.get(p, tex_escape(p)) for p in parts)


#: The LaTeX packages a written table needs (siunitx v3: its `S` columns align the numbers on the
#: decimal point and typeset "0.912 \pm 0.013" as a value with its uncertainty).
LATEX_PACKAGES = r"\usepackage{booktabs} \usepackage{siunitx}"
#: Options of every `S` column: bold set by the Styler (\bfseries) is detected, text mode keeps
#: the body font.
SIUNITX_OPTIONS = "detect-weight, mode=text"
#: A cell without a value: braced, so an `S` column reads it as text, not a number.
LATEX_MISSING = "{--}"
# Of no width (it sits in the column gap), so the `S` column keeps the number's width.
LATEX_FLAG = "\\rlap{$^\\dagger$}"


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


# The page a written table must fit, measured in pdflatex's 10 pt `article` (letter paper): the
# text is 345 pt wide in one column, a column of `twocolumn` 229.5 pt, and a float of up to
# FLOAT_HEIGHT leaves room for its caption on a 550 pt page.
COLUMN_WIDTH, TEXT_WIDTH, FLOAT_HEIGHT = 229.5, 345.0, 430.0
TABCOLSEP = 4.0  # pt; the body in \footnotesize, a cell's second line (interval, std) in \scriptsize
# Upper bounds of a character's width in pt (digits are 4.25 pt in \footnotesize and 3.99 pt in
# \scriptsize; the widest capitals 7.8 pt): estimates that err wide, so a table never overflows.
HEADER_CHAR, VALUE_CHAR, SECOND_LINE_CHAR = 5.6, 4.6, 4.1
LINE_HEIGHT = 9.5  # pt per tabular line in \footnotesize (a cell's second line included)


@dataclass
class Section:
    """Rows of one table in a written tabular: `cells` (row → column → (first line, second line),
    LaTeX), `bold` (row → columns set in bold), a `title` row above them where a tabular stacks
    several metrics, and a rule above its Mean row."""

    title: str
    rows: list[str]
    cells: dict[str, dict[str, tuple[str, str]]]
    bold: dict[str, set[str]]
    formats: dict[str, str]  # column → its S column format


def header_lines(column: str) -> list[str]:
    """A column label broken at its spaces, so "FCDD (paper)" takes two narrow lines."""
    return str(column).split(" ") if len(str(column)) > 8 else [str(column)]


def column_width(column: str, sections: list[Section]) -> float:
    """Estimated width in pt of a column (its header lines, values and second lines)."""
    header = max(len(w) for w in header_lines(column)) * HEADER_CHAR
    first = max((len(_visible(s.cells[r][column][0])) * VALUE_CHAR for s in sections for r in s.rows
                 if column in s.cells[r]), default=0)
    second = max((len(_visible(s.cells[r][column][1])) * SECOND_LINE_CHAR for s in sections for r in s.rows
                  if column in s.cells[r]), default=0)
    return max(header, first, second) + 2 * TABCOLSEP


def _visible(latex: str) -> str:
    """Roughly the characters LaTeX prints: commands and braces dropped, "\\pm" as one sign."""
    return re.sub(r"\\[a-zA-Z]+|[{}$^]", "", latex.replace("\\pm", "±"))


def column_chunks(columns: list[str], sections: list[Section], first_width: float, width: float) -> list[list[str]]:
    """`columns` split into consecutive chunks whose estimated width (after the row-name column,
    `first_width`) fits `width`; one column per chunk at least."""
    chunks: list[list[str]] = [[]]
    used = first_width
    for column in columns:
        needed = column_width(column, sections)
        if chunks[-1] and used + needed > width:
            chunks.append([])
            used = first_width
        chunks[-1].append(column)
        used += needed
    return chunks


def tabular(sections: list[Section], columns: list[str], references: list[str], header: str) -> list[str]:
    """One booktabs tabular of `columns`: the reference columns first under "References", the
    others under "Methods" (where there are both), then per section its title row, its rows (a
    second \\scriptsize line under a row whose cells have one) and a rule above its Mean row."""
    refs = [c for c in columns if c in references]
    formats = "l" + "".join(next(s.formats[c] for s in sections if c in s.formats) for c in columns)
    lines = ["\\begin{tabular}{" + formats + "}", "\\toprule"]
    if refs and len(refs) < len(columns):
        lines.append(f"& \\multicolumn{{{len(refs)}}}{{c}}{{References}} "
                     f"& \\multicolumn{{{len(columns) - len(refs)}}}{{c}}{{Methods}} \\\\")
        lines.append(f"\\cmidrule(lr){{2-{len(refs) + 1}}}\\cmidrule(lr){{{len(refs) + 2}-{len(columns) + 1}}}")
    labels = ["{\\shortstack{" + "\\\\".join(tex_escape(w) for w in header_lines(c)) + "}}" for c in columns]
    lines.append(" & ".join([header, *labels]) + " \\\\")
    for section in sections:
        lines.append("\\midrule")
        if section.title:
            lines.append(f"\\multicolumn{{{len(columns) + 1}}}{{l}}{{\\itshape {section.title}}} \\\\")
        for row in section.rows:
            if row == MEAN:
                lines.append("\\midrule")
            cells = [section.cells[row].get(c, (LATEX_MISSING, "")) for c in columns]
            first = [("\\bfseries " if c in section.bold.get(row, ()) else "") + cell[0] for c, cell in zip(columns, cells)]
            name = "$\\sigma$" if row == SIGMA else tex_escape(row)
            lines.append(" & ".join([name, *first]) + " \\\\")
            if any(cell[1] for cell in cells):
                lines.append(" & ".join(["", *(f"{{\\scriptsize {cell[1]}}}" if cell[1] else "" for cell in cells)])
                             + " \\\\")
    lines.append("\\bottomrule")
    lines.append("\\end{tabular}")
    return lines


def latex_floats(sections: list[Section], columns: list[str], references: list[str], *, header: str,
                 caption: str, label: str, notes: list[str], source: str) -> str:
    """The sections as booktabs tables with decimal-aligned siunitx `S` columns that fit the page
    (see COLUMN_WIDTH): a `table` when every column fits a column of a two-column paper, else a
    `table*` (the full text width) whose columns are split into several tabulars, one under the
    other, as the width needs; tabulars taller than FLOAT_HEIGHT go into floats of their own
    ("continued"). `caption` and `notes` are LaTeX already; the caption goes on the first float."""
    row_names = [header, *(r for s in sections for r in s.rows)]
    first_width = max(len(_visible(tex_escape(r))) for r in row_names) * HEADER_CHAR + 2 * TABCOLSEP
    chunks = column_chunks(columns, sections, first_width, COLUMN_WIDTH)
    environment = "table"
    if len(chunks) > 1:
        environment, chunks = "table*", column_chunks(columns, sections, first_width, TEXT_WIDTH)
    tabulars = []  # (sections, columns, estimated height): per chunk, runs of sections that fit a float
    for chunk in chunks:
        run: list[Section] = []
        height = 0.0
        for section in sections:
            lines_of = sum(1 + any(section.cells[r].get(c, ("", ""))[1] for c in chunk) for r in section.rows)
            section_height = (lines_of + bool(section.title) + 1) * LINE_HEIGHT
            if run and height + section_height > FLOAT_HEIGHT:
                tabulars.append((run, chunk, height))
                run, height = [], 0.0
            run.append(section)
            height += section_height
        tabulars.append((run, chunk, height))
    floats: list[list[str]] = [[]]
    height = 0.0
    for run, chunk, tall in tabulars:
        shown = [c for c in chunk if any(c in s.formats for s in run)]
        if not shown:  # e.g. the paper's columns, which only one metric's section has
            continue
        lines, tall = tabular(run, shown, references, header), tall + 4 * LINE_HEIGHT
        if floats[-1] and height + tall > FLOAT_HEIGHT:
            floats.append([])
            height = 0.0
        floats[-1] += (["\\medskip"] if floats[-1] else []) + lines
        height += tall
    text = [f"% Written by xadbench from {source}. Needs {LATEX_PACKAGES}."]
    for index, body in enumerate(floats):
        title = caption if index == 0 else f"{caption.split('.')[0]} (continued)."
        text += [f"\\begin{{{environment}}}[htbp]", "\\centering", "\\footnotesize",
                 f"\\setlength{{\\tabcolsep}}{{{TABCOLSEP:g}pt}}", f"\\caption{{{title}}}"]
        text += [f"\\label{{{label}}}"] if index == 0 else []
        text += body
        text += notes if index == len(floats) - 1 else []
        text += [f"\\end{{{environment}}}", ""]
    return "\n".join(text)


RICH_MARKS = {BEST: "[bold]%s[/bold]", TIED: "[underline]%s[/underline]"}


def latex_cell(table: ResultTable, row: str, column: str) -> tuple[str, str]:
    """One of our cells as two lines: for an `S` column the value (`siunitx_number`; with ± half
    the interval's width as its uncertainty in the "halfwidth" style, underlined in a tied group,
    † where `flags` says so), and under it as text the interval ("interval" style) and the std
    over seeds in parentheses. Bold, for the significantly best, is the caller's."""
    bounds = table.interval(row, column)
    halfwidth = (bounds[1] - bounds[0]) / 2 if bounds and table.style == "halfwidth" else np.nan
    flag = LATEX_FLAG if column in table.flags.get(row, []) else ""
    value = siunitx_number(table.mean.at[row, column], halfwidth, after=flag, underline=table.mark(row, column) == TIED)
    second = f"[{bounds[0]:.{DIGITS}f}, {bounds[1]:.{DIGITS}f}]" if bounds and table.style == "interval" else ""
    std = table.std.at[row, column] if row in table.std.index else np.nan
    second += "" if pd.isna(std) else f" ({std:.{DIGITS}f})"
    return value, second.strip()


def table_section(table: ResultTable, title: str = "") -> Section:
    """A table's rows as a `Section`: our columns as `latex_cell`, the significantly best of a row
    bold, then the paper's columns (the paper's two decimals on class rows)."""
    ours, published = list(table.mean.columns), list(table.paper.columns)
    cells: dict[str, dict[str, tuple[str, str]]] = {}
    for row in table.mean.index:
        cells[row] = {column: latex_cell(table, row, column) for column in ours}
        # Published class values keep the paper's two decimals; our Mean and σ over them do not.
        digits = DIGITS if row in (MEAN, SIGMA) else PAPER_DIGITS
        cells[row].update({column: (siunitx_number(table.paper.at[row, column], digits=digits), "")
                           for column in published})
    bold = {row: {c for c in ours if table.mark(row, c) == BEST} for row in table.mean.index}
    halfwidths = table.style == "halfwidth" and table.low is not None
    formats = {c: siunitx_column(table.mean[c], uncertainty=halfwidths and table.low[c].notna().any()) for c in ours}
    formats |= {c: siunitx_column(table.paper[c]) for c in published}
    return Section(title, list(table.mean.index), cells, bold, formats)


def table_notes(tables: Sequence[ResultTable]) -> list[str]:
    """The footnotes under a float, LaTeX: † and "--" where the tables use them."""
    notes = []
    if any(any(t.flags.values()) for t in tables):
        notes.append(f"\\par\\smallskip{{\\scriptsize $^\\dagger$ not above the method's own mean map "
                     f"(by less than {MEAN_MAP_MARGIN:g}).}}")
    if any(t.mean[c].isna().all() for t in tables for c in t.mean.columns):
        notes.append("\\par{\\scriptsize --: not applicable to the method.}")
    return notes


def to_latex(table: ResultTable) -> str:
    """The table as booktabs floats that fit the page (`latex_floats`) under its short caption."""
    return latex_floats([table_section(table)], [*table.mean.columns, *table.paper.columns], table.references,
                        header=row_header(table), caption=_caption(short_caption(table)),
                        label=f"tab:xadbench-{re.sub(r'[^A-Za-z0-9]+', '-', table.slug)}", notes=table_notes([table]),
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
    classes = {r for t in tables for r in t.mean.index if r not in (MEAN, SIGMA)}
    averaged = f"Mean over {len(classes)} classes" if len(classes) > 1 else "One class, no mean"
    summary = RichTable(title=f"{averaged}{': ' + context if context else ''} ({legend})")
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
