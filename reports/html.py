"""One self-contained HTML page per run (RUN_DIR/report.html): what was run, the tables, the
figures, and the published numbers beside ours.

Everything the page shows is inside the file: CSS and the small table-sorting script inline,
figures as base64 PNG `data:` URIs. It makes no network request, so it opens offline from disk
and can be mailed or archived as one file.

Sections:
- What was run: the provenance `xadbench run` recorded in config.json (command, xadbench version,
  git commit, Python and torch versions, device, threads, hardware, start time, weights with
  their sha256, data root; one entry per invocation), the data (training and test images per
  class) and the weights every method used.
- Read with care: notes on what differs from the paper's setup (preset and image size, random
  init, weights other than torchvision's ImageNet ones), printed wherever the paper's numbers
  stand beside ours.
- Tables: the run's tables exactly as written to RUN_DIR/tables (`reports.report.write_report`),
  with the bootstrap intervals and marks (and the paper's columns when asked for), its caption in words; reference methods first, set apart by a rule; cells whose pixel
  AUC is not clearly above the method's own mean map's (`tables.ResultTable.flags`) flagged.
- Figures: the overview (every method's AUCs per class, `figures.draw_overview`), then per class
  the heatmap grids (every method's score above its maps) and ROC curves of
  `figures.render_figures`.

A last inline script writes what a browser made of the page (images decoded, tables present,
script errors) into `#xad-checks`, so a headless browser's DOM dump can be tested.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from xadbench.files import atomic_write
from xadbench.metrics.registry import list_metrics, metric_label
from xadbench.provenance import now
from xadbench.reports.figures import DPI, Drawn
from xadbench.reports.run import Run
from xadbench.reports.table_formats import caption_words, cell_text, format_value, row_header, short_caption
from xadbench.reports.tables import (
    BEST,
    MEAN,
    SIGMA,
    TIED,
    ResultTable,
    setup_notes,
)
from xadbench.sanity import MEAN_MAP_MARGIN

REPORT_NAME = "report.html"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232a;background:#f7f8fa}
main{max-width:1280px;margin:0 auto;padding:18px 28px 60px}
h1{font-size:24px;margin:8px 0 2px}h2{font-size:19px;margin:30px 0 8px;border-bottom:2px solid #d6dbe1;padding-bottom:3px}
h3{font-size:15px;margin:18px 0 6px}
.sub{color:#5b6570;margin:0 0 10px}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0 12px}
dl.kv dt{color:#5b6570}dl.kv dd{margin:0;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
.note{background:#fff6dc;border-left:4px solid #e0a800;padding:7px 12px;margin:8px 0}
.flagnote{background:#fdecec;border-left:4px solid #c62828;padding:7px 12px;margin:8px 0}
table.res{border-collapse:collapse;background:#fff;margin:6px 0 4px;font-variant-numeric:tabular-nums}
table.res th,table.res td{padding:3px 10px;border-bottom:1px solid #e6e9ed;white-space:nowrap}
table.res th{background:#eef1f4;font-weight:600;text-align:center}
table.res td{text-align:right}table.res td.cls,table.res th.cls{text-align:left}
table.res th.sortable{cursor:pointer}table.res th.sortable:after{content:" \\2195";color:#9aa4ae;font-size:11px}
table.res tfoot td{border-top:2px solid #9aa4ae;background:#fafbfc}
table.res .ref{color:#5b6570;background:#f4f5f7}
table.res .lastref{border-right:2px solid #9aa4ae}
table.res .paper{color:#6a4c93;font-style:italic}
table.res td.flag{background:#fdecec}
table.res b{color:#0b5394}
.tblock{margin:0 0 14px;max-width:100%}.tscroll{overflow-x:auto;max-width:100%}
.explain{color:#3d4650;font-size:12.5px;margin:4px 0 8px}
.tblock h3{margin:10px 0 2px}.tcap{color:#3d4650;font-size:12.5px;margin:0 0 4px}
figure{margin:8px 0 16px;background:#fff;border:1px solid #e1e5ea;padding:6px;display:inline-block;vertical-align:top;max-width:calc(100% - 14px);box-sizing:border-box}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#5b6570;font-size:12.5px;max-width:1100px}
.rocs figure{max-width:420px}
details{margin:6px 0}summary{cursor:pointer;font-weight:600;font-size:15px}
#xad-checks{display:none}
"""

#: Records script errors before anything else runs, so the checks below can count them.
ERROR_TRAP = "window.__xadErrors=[];window.addEventListener('error',function(e){window.__xadErrors.push(String(e.message))});"

SORT_AND_CHECK = """
document.querySelectorAll('table.res').forEach(function(t){
  var head=t.tHead.rows[t.tHead.rows.length-1];
  Array.prototype.forEach.call(head.cells,function(th,i){
    th.classList.add('sortable');
    th.addEventListener('click',function(){
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      var dir=th.dataset.dir==='desc'?1:-1;th.dataset.dir=dir===1?'asc':'desc';
      rows.sort(function(a,b){
        var x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;
        if(x===undefined||y===undefined){x=a.cells[i].textContent;y=b.cells[i].textContent;return dir*x.localeCompare(y);}
        x=parseFloat(x);y=parseFloat(y);if(isNaN(x))return 1;if(isNaN(y))return -1;return dir*(x-y);
      });
      rows.forEach(function(r){body.appendChild(r)});
    });
  });
});
window.addEventListener('load',function(){
  var imgs=Array.prototype.slice.call(document.images);
  var decoded=imgs.filter(function(i){return i.complete&&i.naturalWidth>0}).length;
  var checks={images:imgs.length,images_decoded:decoded,tables:document.querySelectorAll('table.res').length,
    table_rows:document.querySelectorAll('table.res tbody tr').length,
    external:document.querySelectorAll('[src^="http"],link[href^="http"],script[src]').length,
    overflow:document.documentElement.scrollWidth-document.documentElement.clientWidth,
    repeated:(function(){var seen={},twice=[];document.querySelectorAll('.tcap,.explain,.flagnote,figcaption')
      .forEach(function(e){var t=e.textContent;if(seen[t]&&twice.indexOf(t)<0)twice.push(t);seen[t]=1});return twice})(),
    errors:window.__xadErrors};
  document.getElementById('xad-checks').textContent=JSON.stringify(checks);
});
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def png_data_uri(drawn: Drawn) -> str:
    buffer = io.BytesIO()
    drawn.figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def read_config(run_dir: Path) -> list[dict[str, Any]]:
    """The invocations recorded in RUN_DIR/config.json (one dict, or a list of them), oldest first."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return []
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    entries = config if isinstance(config, list) else config.get("invocations", [config]) if isinstance(config, dict) else []
    return [e for e in entries if isinstance(e, dict)]


def _kv(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs if v not in (None, "", []))
    return f'<dl class="kv">{rows}</dl>'


def provenance_section(run_dir: Path, results: pd.DataFrame) -> str:
    parts = ['<section id="run"><h2>What was run</h2>']
    entries = read_config(run_dir)
    for number, entry in enumerate(entries, 1):
        prov = entry.get("provenance")
        title = f"Invocation {number} of {len(entries)}" if len(entries) > 1 else "Invocation"
        if prov and not isinstance(prov, dict):  # edited by hand or written by another tool
            parts.append(f"<h3>{title}</h3><p class='note'>The provenance in config.json is malformed (not a JSON "
                         f"object): <code>{_e(json.dumps(prov)[:200])}</code></p>")
            continue
        if not prov:
            argv = entry.get("argv", [])
            argv = " ".join(map(str, argv)) if isinstance(argv, list) else str(argv)
            parts.append(f"<h3>{title}</h3><p class='note'>No provenance recorded (config.json written by an older "
                         f"xadbench); arguments: <code>{_e(argv) or '—'}</code></p>")
            continue
        hw, weights = (value if isinstance(value, dict) else {} for value in (prov.get("hardware"), prov.get("weights")))
        gpus = hw.get("gpus") if isinstance(hw.get("gpus"), list) else []
        parts.append(f"<h3>{title}</h3>" + _kv([
            ("command", prov.get("command")), ("started", prov.get("started_at")),
            ("xadbench", prov.get("xadbench")), ("git commit", prov.get("git_commit") or "not a git checkout"),
            ("python / torch", f"{prov.get('python')} / torch {prov.get('torch')}"),
            ("device", prov.get("device")),
            ("threads", f"torch {prov.get('torch_threads')}, OMP_NUM_THREADS={prov.get('omp_num_threads') or 'unset'}"),
            ("hardware", f"{hw.get('cpu')}, {hw.get('cpu_cores')} cores, {hw.get('memory_gib')} GiB"
                         + (f"; GPU {', '.join(map(str, gpus))}" if gpus else "; no GPU")),
            ("host / OS", f"{hw.get('host')} / {hw.get('os')}"),
            # What the jobs used (results' `weights`), so the block agrees with the per-method table;
            # the invocation's --weights/--pretrained is only what was offered to backbones.
            ("weights used", weights_used(results)),
            ("weights sha256", weights.get("sha256") if weights.get("path") else None),
            ("data root", prov.get("data_root") or "the data set's default location"),
        ]))
    if not entries:
        parts.append("<p class='note'>No config.json in this run folder: the command that wrote it is unknown.</p>")
    stored = [p for p in (Path(run_dir) / "results.sqlite", Path(run_dir) / "results.csv") if p.is_file()]
    changed = max(p.stat().st_mtime for p in stored) if stored else None
    parts.append(f"<p class='sub'>Report written {_e(now())}"
                 + (f"; results last changed {_e(pd.Timestamp(changed, unit='s', tz='UTC').isoformat(timespec='seconds'))}"
                    if changed else "") + ".</p>")
    parts.append(data_table(results))
    parts.append("</section>")
    return "".join(parts)


def weights_used(results: pd.DataFrame) -> str:
    """The weights the run's jobs started from, with the methods of each: "none (ae, centre)"."""
    jobs = results.drop_duplicates("job_id")
    return "; ".join(f"{w} ({', '.join(dict.fromkeys(group['column']))})" for w, group in jobs.groupby("weights", sort=False))


def data_table(results: pd.DataFrame) -> str:
    """Training and test images per data set, class and protocol, and the weights of each method."""
    jobs = results.drop_duplicates("job_id")
    counts = jobs.groupby(["dataset", "protocol", "class"], sort=False).agg(
        n_train=("n_train", "max"), n_test=("n_test", "max"), jobs=("job_id", "nunique")).reset_index()
    rows = "".join(
        f"<tr><td class='cls'>{_e(Path(r.dataset).name)}</td><td class='cls'>{_e(r.protocol)}</td>"
        f"<td class='cls'>{_e(r._3)}</td><td data-v='{r.n_train}'>{r.n_train}</td><td data-v='{r.n_test}'>{r.n_test}</td>"
        f"<td data-v='{r.jobs}'>{r.jobs}</td></tr>"
        for r in counts.itertuples())
    weights = jobs.groupby("method", sort=False)["weights"].agg(lambda w: ", ".join(sorted(set(map(str, w)))))
    weight_rows = "".join(f"<tr><td class='cls'>{_e(m)}</td><td class='cls'>{_e(w)}</td></tr>" for m, w in weights.items())
    return ("<h3>Data and weights</h3>"
            "<p class='tcap'>Images per class (training: the largest over the class's jobs; test: the scored "
            "test set) and jobs run.</p><table class='res' id='data-table'><thead><tr><th class='cls'>data set</th>"
            "<th class='cls'>protocol</th><th class='cls'>class</th><th>training images</th><th>test images</th>"
            f"<th>jobs</th></tr></thead><tbody>{rows}</tbody></table>"
            "<p class='tcap'>Backbone weights each method used (results.csv's <code>weights</code>).</p>"
            "<table class='res' id='weights-table'><thead><tr><th class='cls'>method</th><th class='cls'>weights</th></tr>"
            f"</thead><tbody>{weight_rows}</tbody></table>")


HTML_MARKS = {BEST: "<b>%s</b>", TIED: "<u>%s</u>"}


def table_html(table: ResultTable) -> str:
    """One table: class rows (sortable) in tbody, Mean and σ in tfoot; the reference columns
    first under their own rule, the paper's columns last; cells `table.flags` names marked ⚑."""
    columns, references = list(table.mean.columns), set(table.references)
    published = list(table.paper.columns)
    last_ref = [c for c in columns if c in references][-1:]

    def header_class(c: str) -> str:
        return " ".join(filter(None, ["ref" if c in references else "", "lastref" if c in last_ref else "",
                                      "paper" if c in published else ""]))

    head = "".join(f"<th class='{header_class(c)}'>{_e(c)}</th>" for c in [*columns, *published])

    def row_html(row: str) -> str:
        cells = [f"<td class='cls'>{_e(row)}</td>"]
        for c in columns:
            mean = table.mean.at[row, c]
            text = HTML_MARKS.get(table.mark(row, c), "%s") % _e(cell_text(table, row, c))
            flagged = c in table.flags.get(row, [])
            classes = " ".join(filter(None, [header_class(c), "flag" if flagged else ""]))
            mark = " ⚑" if flagged else ""
            value = "" if pd.isna(mean) else f" data-v='{mean:.6f}'"
            cells.append(f"<td class='{classes}'{value}>{text}{mark}</td>")
        for c in published:
            value = table.paper.at[row, c]
            digits = 3 if row in (MEAN, SIGMA) else 2
            data = "" if pd.isna(value) else f" data-v='{value:.6f}'"
            cells.append(f"<td class='paper'{data}>{_e(format_value(value, digits))}</td>")
        return "<tr>" + "".join(cells) + "</tr>"

    classes = [r for r in table.mean.index if r not in (MEAN, SIGMA)]
    body = "".join(row_html(r) for r in classes)
    foot = "".join(row_html(r) for r in (MEAN, SIGMA) if r in table.mean.index)
    title = metric_label(table.key["metric"]) + (", per defect type" if table.by_defect else "")
    what = metric_label(table.key["metric"]).split(" (")[0] + (" per defect type" if table.by_defect else "")
    return (f"<div class='tblock'><h3>{_e(title)}</h3>"
            f"<p class='tcap'>{_e(short_caption(table, what).rsplit(' Details:', 1)[0])}</p>"
            f"<div class='tscroll'><table class='res' data-metric='{_e(table.key['metric'])}'>"
            f"<thead><tr><th class='cls'>{_e(row_header(table).lower())}</th>{head}</tr></thead>"
            f"<tbody>{body}</tbody><tfoot>{foot}</tfoot></table></div></div>")


FLAG_NOTE = (f"<p class='flagnote'>⚑ not above the method's own mean map (the average of its maps over the test "
             f"set, used as every image's map) by {MEAN_MAP_MARGIN}: the map shows where defects usually are, not "
             "what the method saw in the image.</p>")


SANITY_HELP = (
    "<p class='sub'>Sanity checks (xadbench.sanity): <code>*_mean_map</code> scores the method's own mean map "
    "as every image's map (a method should clearly beat it); <code>randomised_*</code> compares maps before and "
    "after re-initialising the trained layers (Adebayo et al., NeurIPS 2018; a correlation near 1 means the map "
    "explains the architecture, not the model); <code>deletion_area</code>/<code>insertion_area</code> follow the "
    "method's own score as its top-ranked pixels are replaced by their nominal counterpart (Petsiuk et al., BMVC "
    "2018); <code>faithfulness_gain</code> is the random order's deletion area minus the map's (positive: the "
    "map's pixels drive the score).</p>")


def explanations(tables: list[ResultTable]) -> list[str]:
    """What the tables' short captions leave out (`caption_words`), each text once for the tables
    it explains, and the ⚑ note once where a table uses it."""
    texts = dict.fromkeys(caption_words(t, with_metric=False) for t in tables)
    flagged = any(any(t.flags.values()) for t in tables)
    return [f"<p class='explain'>{_e(text)}</p>" for text in texts] + ([FLAG_NOTE] if flagged else [])


def tables_section(tables: list[ResultTable]) -> str:
    parts = ['<section id="tables"><h2>Tables</h2>',
             "<p class='sub'>Click a column header to sort the classes. Cells: value [bootstrap interval] (std "
             "over seeds). Bold: the significantly best method of a row (its paired bootstrap difference to every "
             "other excludes 0); underlined: the tied group when no method is significantly best. Grey columns: reference maps that learn nothing about "
             "defects, the floor every method must clear. Purple: published in Liznerski et al. "
             "(ICLR 2021).</p>"]
    # The registry's headline metrics first; every other metric (the sanity checks) under its own heading.
    headline = [t for t in tables if t.key["metric"] in list_metrics(headline=True)]
    others = [t for t in tables if t.key["metric"] not in list_metrics(headline=True)]
    parts += explanations(headline) + [table_html(t) for t in headline]
    if others:
        parts += ["<h2 id='sanity'>Sanity checks and other metrics</h2>", SANITY_HELP]
        parts += explanations(others) + [table_html(t) for t in others]
    parts.append("</section>")
    return "".join(parts)


def notes_section(results: pd.DataFrame, tables: list[ResultTable]) -> str:
    notes = setup_notes(results)
    if not notes:
        return ""
    compared = any(len(t.paper.columns) for t in tables)
    intro = ("The paper's numbers stand beside ours below, but the setups differ:" if compared
             else "This run's setup differs from the paper's:")
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f'<section id="notes"><div class="note"><b>Read with care.</b> {intro}<ul>{items}</ul></div></section>'


def _figure(d: Drawn) -> str:
    return f"<figure><img alt='{_e(d.stem)}' src='{png_data_uri(d)}'><figcaption>{_e(d.caption)}</figcaption></figure>"


def figures_section(drawn: list[Drawn]) -> str:
    if not drawn:
        return ""
    parts = ['<section id="figures"><h2>Figures</h2>']
    parts += [_figure(d) for d in drawn if d.kind == "overview"]
    for key in dict.fromkeys(d.key for d in drawn if d.kind != "overview"):
        mine = [d for d in drawn if d.key == key]
        dataset, class_name, protocol, preset = key
        parts.append(f"<details open><summary>{_e(dataset)} / {_e(class_name)} ({_e(protocol)}, {_e(preset)} preset)"
                     "</summary>")
        parts += [_figure(d) for d in mine if d.kind == "grid"]
        parts.append("<div class='rocs'>")
        parts += [_figure(d) for d in mine if d.kind != "grid"]
        parts.append("</div></details>")
    parts.append("</section>")
    return "".join(parts)


def render_html(run: Run, tables: list[ResultTable], drawn: list[Drawn], figure_notes: list[str] = ()) -> str:
    """The report page of a run as one HTML string (see the module docstring): its `tables`
    exactly as written to RUN_DIR/tables, its `drawn` figures embedded, and `figure_notes` (why
    figures are missing) under them (`reports.report.write_report` builds all three once)."""
    results = run.results
    notes = "".join(f"<p class='note'>{_e(p)}</p>" for p in figure_notes)
    name = run.path.resolve().name
    return "".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>xadbench report: {_e(name)}</title><script>{ERROR_TRAP}</script><style>{CSS}</style></head><body><main>",
        f"<h1>xadbench report: {_e(name)}</h1>",
        f"<p class='sub'>{len(results['job_id'].unique())} jobs · methods {_e(', '.join(dict.fromkeys(results['column'])))} · "
        f"classes {_e(', '.join(dict.fromkeys(results['class'])))}</p>",
        notes_section(results, tables),
        tables_section(tables),
        figures_section(drawn) + notes,
        provenance_section(run.path, results),
        "<pre id='xad-checks'></pre>",
        f"<script>{SORT_AND_CHECK}</script></main></body></html>",
    ])


def write_html(run: Run, tables: list[ResultTable], drawn: list[Drawn], figure_notes: list[str] = ()) -> Path:
    """Write RUN_DIR/report.html (`render_html`, atomically) and return its path."""
    text = render_html(run, tables, drawn, figure_notes)
    path = run.path / REPORT_NAME
    with atomic_write(path) as handle:
        handle.write(text)
    return path

