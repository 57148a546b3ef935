"""The `xadbench` command line: thin Typer commands over library functions.

Every command group is an `errors.OneLineErrors`: each failure becomes one line on stderr and
a non-zero exit, and each warning one line.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from xadbench.cli.errors import OneLineErrors, interrupt_note, one_line
from xadbench.cli.options import (
    BlurOption,
    DeviceOption,
    PresetOption,
    PretrainedOption,
    ProtocolOption,
    WeightsOption,
)
from xadbench.errors import XadError
from xadbench.options import (
    check_device,
    check_k,
    check_weights_file,
    parse_oe_limit,
    parse_seeds,
    split_list,
)
from xadbench.terminal import printable

#: -h as well as --help, on every command. Help texts are plain text (rich_markup_mode=None):
#: brackets such as 'xadbench[ray]' or '[low, high]' are shown, not read as markup.
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, add_completion=False, context_settings=HELP_OPTIONS,
                  rich_markup_mode=None,
                  help="Explainability benchmark for deep anomaly detection on images (FCDD and baselines).")
methods_app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, context_settings=HELP_OPTIONS, rich_markup_mode=None,
                          help="Registered anomaly detection methods.")
datasets_app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, context_settings=HELP_OPTIONS, rich_markup_mode=None,
                           help="Registered data sets.")
data_app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, context_settings=HELP_OPTIONS, rich_markup_mode=None, help="Built-in data.")
weights_app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, context_settings=HELP_OPTIONS, rich_markup_mode=None,
                          help="Backbone weights files.")
app.add_typer(methods_app, name="methods")
app.add_typer(datasets_app, name="datasets")
app.add_typer(data_app, name="data")
app.add_typer(weights_app, name="weights")


def _print_version(value: bool) -> None:
    if value:
        from xadbench.provenance import xadbench_version

        typer.echo(f"xadbench {xadbench_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Explainability benchmark for deep anomaly detection on images (FCDD and baselines)."""


def _load_config(ctx: typer.Context, path: Path | None) -> Path | None:
    """--config FILE.toml: its keys (option names, with - or _) become the defaults of `run`'s
    options; options given on the command line win. Unknown keys are a one-line error."""
    if path is None:
        return None
    import difflib
    import tomllib

    try:
        values = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise typer.BadParameter(f"{path}: no such file", param_hint="--config") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise typer.BadParameter(f"{path}: not a readable TOML file ({one_line(exc)})", param_hint="--config") from None
    names = {p.name for p in ctx.command.params if p.name not in ("config", "dry_run")}
    multiple = {p.name: getattr(p, "multiple", False) for p in ctx.command.params}
    defaults = {}
    for key, value in values.items():
        name = {"set": "set_"}.get(key.replace("-", "_"), key.replace("-", "_"))
        if name not in names:
            close = difflib.get_close_matches(name, sorted(names), n=1)
            hint = f"; did you mean {close[0].rstrip('_').replace('_', '-')!r}?" if close else ""
            raise typer.BadParameter(f"{path}: unknown option {key!r}{hint}", param_hint="--config")
        if multiple.get(name) and not isinstance(value, list):
            value = [value]  # a repeatable option given once
        if isinstance(value, list) and not multiple.get(name):
            value = ",".join(map(str, value))  # classes = ["bottle", "wood"] as well as "bottle,wood"
        defaults[name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return Path(path)


# "\b" (click): the paragraph after it keeps its line breaks, so the commands stay copyable.
RUN_EXAMPLES = """Examples:

\b
  xadbench run --methods fcdd,grad,ae --dataset mvtec --root ~/data/mvtec_ad \\
      --classes bottle --weights vgg11_bn_features.pt
  xadbench run --config my-run.toml --dry-run
      (my-run.toml: options as keys, e.g. methods = "fcdd,ae" and classes = ["bottle"])
"""


#: The methods a bare `xadbench run` proposes (and `--dry-run` without --methods lists).
DEFAULT_METHODS = "fcdd,grad,ae"


@app.command(epilog=RUN_EXAMPLES)
def run(
    config: Annotated[Path | None, typer.Option(
        is_eager=True, callback=_load_config, show_default=False,
        help="TOML file of run options (keys: the option names, e.g. methods, classes, preset); options on the "
             "command line override it; the file is saved in the run folder as run-config.toml (the latest) and "
             "in config.json with every invocation's options.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the job grid and which jobs the run folder already holds; train nothing.")] = False,
    methods: Annotated[str | None, typer.Option(
        help=f"Comma-separated method names (see `xadbench methods list`), e.g. {DEFAULT_METHODS}; without it "
             "`run` says what that grid would run instead of starting it (--dry-run lists it).",
        show_default=False)] = None,
    dataset: Annotated[list[str], typer.Option(
        metavar="NAME", help="Registered data set name, or a folder-per-class path; several comma-separated or repeated "
             "(one table per data set and a cross-data-set summary).")] = ["synthetic"],
    root: Annotated[list[str] | None, typer.Option(
        metavar="DIR", help="Where the data set lives (default: $XADBENCH_DATA/<folder>, else ~/.cache/xadbench/data/<folder>; "
             "synthetic: its cache); with several data sets NAME=DIR, repeatable.", show_default=False)] = None,
    dataset_option: Annotated[list[str] | None, typer.Option(
        metavar="KEY=VALUE", help="Data set option KEY=VALUE for every data set of the run, or NAME.KEY=VALUE for one (repeatable), "
             "e.g. folder-masks' abnormal=crack,scratch (README, section Data; a wrong KEY lists the ones it has).", show_default=False)] = None,
    classes: Annotated[str, typer.Option(help="Comma-separated class names, or 'all'; NAME:CLASS for one data set of several.")] = "all",
    seeds: Annotated[str | None, typer.Option(
        help="Comma-separated seeds (default 0; with the cpu preset, seed-sensitive methods such as grad run "
             "with 0,1,2).", show_default=False)] = None,
    preset: PresetOption = "cpu",
    protocol: ProtocolOption = "unsupervised",
    device: DeviceOption = "auto",
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/<dataset>-<protocol>-<preset>).")] = None,
    blur: BlurOption = "gaussian",
    weights: WeightsOption = None,
    pretrained: PretrainedOption = True,
    oe: Annotated[str | None, typer.Option(help="Outlier Exposure: a registered data set name or a folder path.")] = None,
    oe_root: Annotated[str | None, typer.Option(help="Where a registered OE data set lives (default: --root).")] = None,
    oe_limit: Annotated[str, typer.Option(help="How many OE images: a number (2, 8, 128, 2048) or 'all'.")] = "all",
    oe_exclude: Annotated[str | None, typer.Option(help="Comma-separated OE classes to leave out.")] = None,
    k: Annotated[int, typer.Option(help="Real labelled anomalies per category (semi-supervised).")] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Method hyperparameter KEY=VALUE for every method that has KEY, or METHOD.KEY=VALUE for one (repeatable).")] = None,
    download: Annotated[bool, typer.Option(help="Fetch a missing data set: MVTec-AD (the asked-for classes), VisA, MVTec AD 2, BTAD, or torchvision's sets and VOC (MPDD: prints the manual step).")] = False,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write tables, figures and report.html at the end.")] = True,
    references: Annotated[bool, typer.Option(
        "--references/--no-references",
        help="Add the reference maps (centre, pixelstats) when the data set has pixel ground truth.")] = True,
    sanity: Annotated[bool | None, typer.Option(
        "--sanity/--no-sanity", show_default=False,
        help="Also score the sanity checks: own mean map, model randomisation, deletion/insertion "
             "(default: on for the cpu preset, off for paper).")] = None,
    executor: Annotated[Literal["local", "ray"], typer.Option(
        help="Where jobs run: local (one after another here) or ray (one Ray task per job; needs the ray extra: "
             "pip install 'xadbench[ray]').")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray: join this cluster (the head's HOST:PORT, or auto); default: a Ray instance on this machine.")] = None,
    cpus_per_job: Annotated[float | None, typer.Option(help="CPUs per job, also torch's thread count (Ray default 1; local default: torch's own).")] = None,
    gpus_per_job: Annotated[float | None, typer.Option(help="Ray: GPUs per job, e.g. 0.5 for two jobs per GPU (default 1 with --device cuda, else 0).")] = None,
) -> None:
    """Train and score every (class × method × seed) job; resumes where a killed run stopped.
    Every option, --set value and asked-for class is checked before the first job starts."""
    from xadbench import download as archives, run_folder, runner
    from xadbench.cli.console import download_bars
    from xadbench.dataset_choices import data_choices
    from xadbench.executors import make_executor
    from xadbench.grid import plan_grid, run_grid
    from xadbench.files import atomic_write
    from xadbench.heatmaps import BLUR_POLICIES
    from xadbench.profiles import get_profile
    from xadbench.registry import methods as method_registry
    from xadbench.validation import check_classes, check_out_folder, method_params

    archives.progress_display = download_bars  # the data set downloads below show rich's bars
    job_executor = make_executor(executor, address, cpus_per_job, gpus_per_job, device)
    method_names = list(dict.fromkeys(split_list(DEFAULT_METHODS if methods is None else methods)))
    if not method_names:
        raise XadError("--methods is empty; e.g. --methods fcdd,grad,ae")
    for name in method_names:
        method_registry.get(name)
    blur_policies = {"both": BLUR_POLICIES}.get(blur, (blur,))
    seed_values = None if seeds is None else parse_seeds(seeds)  # None: the seed policy (grid.default_seeds)
    check_k(k)
    limit = parse_oe_limit(oe_limit)
    if executor == "local":  # with Ray the jobs run on the cluster's machines, not this one
        check_device(device)
    check_weights_file(weights)
    params = method_params(method_names, set_ or [])
    choices = data_choices(dataset, root or [], dataset_option or [], classes)
    out = out or Path("runs") / f"{'+'.join(Path(c.name).name for c in choices)}-{protocol}-{preset}"
    check_out_folder(out)
    opened = [(choice, runner.open_dataset(choice.name, choice.root, download, choice.options)) for choice in choices]
    common = dict(preset=preset, protocol=protocol, blur=tuple(blur_policies),
                  weights=weights, pretrained=pretrained, oe=oe, oe_root=oe_root, oe_limit=limit,
                  oe_exclude=tuple(split_list(oe_exclude)), k=k, device=device, download=download,
                  sanity=preset == "cpu" if sanity is None else sanity)
    specs, class_lists = [], []
    for choice, data in opened:
        # Only the asked-for classes are touched: listing all of them reads every class folder.
        class_list = data.classes() if choice.classes is None else list(choice.classes)
        if not class_list:
            raise XadError(f"no classes found for data set {choice.name!r} under {data.root}")
        class_lists.append(class_list)
        specs += plan_grid(class_list, method_names, seeds=seed_values, params=params,
                           references=references and data.has_masks, dataset=choice.name, root=choice.root,
                           dataset_options=choice.options, **common)
    if methods is None and not dry_run:  # a bare `xadbench run`: say what it would start rather than start it
        count = sum(map(len, class_lists))
        raise XadError(f"no --methods given: `xadbench run --methods {DEFAULT_METHODS}` would run {len(specs)} jobs "
                       f"({', '.join(dict.fromkeys(s.method for s in specs))} on {count} "
                       f"class{'es' if count != 1 else ''} of {', '.join(choice.name for choice, _ in opened)}); "
                       "list them with --dry-run, or try `make demo-quick` for a one-minute start")
    # The checks of a real run before its first job, in a dry run too; only a dry run with
    # --download cannot check the classes it has not fetched.
    for (_, data), class_list in zip(opened, class_lists):
        if not dry_run:
            data.fetch(class_list)  # before any job starts, so a failed download stops the run here
        if not (dry_run and download):
            check_classes(data, class_list, get_profile(data.profile).image_size[preset])
    if pretrained and weights is None and any(get_profile(data.profile).network == "vgg" for _, data in opened) and any(
            "pretrained" in method_registry.get(m).param_names() for m in method_names):
        from xadbench.backbones import check_imagenet_weights

        check_imagenet_weights(fetch=not dry_run)  # resolved now, not when the first job needs them
    if dry_run:
        print_job_grid(specs, out)
        return
    if config is not None:
        with atomic_write(out / "run-config.toml") as handle:
            handle.write(config.read_text())
    from xadbench.cli.console import print_summary, run_progress

    interrupt_note["text"] = f"every finished job is kept in {out}; rerun the same command to resume"
    from xadbench.provenance import collect

    roots = [data.root for _, data in opened]  # the roots used, default or given
    provenance = collect(sys.argv[1:], {"device": device, "weights": weights, "pretrained": pretrained,
                                        "root": roots[0] if len(roots) == 1 else roots})
    with job_executor:  # joins or starts Ray before anything is written
        run_folder.write_config(out, {"command": "run", "argv": sys.argv[1:], "jobs": [s.job_id for s in specs],
                                      "provenance": provenance,
                                      **({"config": {"file": str(config), "text": config.read_text()}} if config else {})})
        with run_progress(len(specs)) as progress:
            results = run_grid(specs, out, progress, job_executor)
    typer.echo(f"results: {out / 'results.csv'}")
    if report:
        write_run_report(out)
    else:
        print_summary(results[results["job_id"].isin([s.job_id for s in specs])])


def write_run_report(run_dir: Path) -> None:
    """Bootstrap intervals (stored in the results store), tables, figures and report.html of a
    run folder (each figure drawn once, saved and embedded); prints the tables' summary and where
    they went."""
    from xadbench.terminal import stdout_console
    from xadbench.reports.report import write_report
    from xadbench.reports.table_formats import summary_table

    report = write_report(run_dir)
    stdout_console().print(summary_table(report.tables))
    typer.echo(f"tables:  {run_dir / 'tables'} ({len(report.table_paths)} files)")
    typer.echo(f"figures: {run_dir / 'figures'} ({len(report.figure_paths)} files)")
    typer.echo(f"report:  {report.page.resolve()}")


def print_job_grid(specs: list, out: Path) -> None:
    """The dry run's output: one line per job (class, method, seed, id) and whether `out`
    already holds its results, then the counts."""
    from xadbench.run_folder import finished_jobs

    done = finished_jobs(out)
    for spec in specs:
        state = "done" if spec.job_id in done else "to run"
        typer.echo(f"{state:<7} {printable(spec.class_name):<16} {spec.method:<12} seed {spec.seed:<3} {spec.job_id}")
    finished = sum(spec.job_id in done for spec in specs)
    typer.echo(f"{len(specs)} jobs into {out}: {finished} done, {len(specs) - finished} to run (dry run: nothing trained)")


@app.command(epilog="Example: xadbench evaluate runs/mvtec-semi-supervised-cpu")
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `xadbench run` (its --out).", show_default=False)],
    device: DeviceOption = "auto",
    sanity: Annotated[bool | None, typer.Option(
        "--sanity/--no-sanity", show_default=False,
        help="Also score the sanity checks (default: as the run scored each job: on for the cpu preset, off for paper).")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write tables, figures and report.html at the end.")] = True,
) -> None:
    """Score a finished run again from its saved predictions and checkpoints, without retraining:
    every metric and the sanity checks (randomisation and deletion/insertion need the job's
    checkpoint); each job's rows in results.csv are replaced."""
    from xadbench.rescore import rescore_run

    count = rescore_run(run_dir, device=device, with_sanity=sanity,
                        on_job=lambda job, method, name: typer.echo(f"scoring {method} on {printable(name)} ({job})", err=True))
    typer.echo(f"scored {count} job{'s' if count != 1 else ''}: {run_dir / 'results.csv'}")
    if report:
        write_run_report(run_dir)


@app.command(epilog="Example: xadbench check runs/mvtec-unsupervised-cpu")
def check(
    run_dir: Annotated[Path, typer.Argument(help="Run folder written by `xadbench run` (its --out).", show_default=False)],
) -> None:
    """Verify a run folder without changing it: its results store, and every finished job's
    predictions and checkpoint read in full. One line per problem, exit code 1 when there is
    any; `xadbench run` into the folder reruns the jobs named."""
    from xadbench import run_folder

    if not run_dir.is_dir():
        raise XadError(f"run folder {run_dir} does not exist; pass the folder `xadbench run` wrote (its --out)")
    problems = run_folder.check_run(run_dir)
    for problem in problems:
        typer.echo(one_line(problem.message))
    if problems:
        raise typer.Exit(1)
    store = run_folder.results_store(run_dir)
    if not store.exists() and not store.csv_path.exists():
        raise XadError(f"{run_dir} holds no results ({store.path.name} or {store.csv_path.name})")
    note = "" if store.exists() else f" ({store.csv_path.name} of an older xadbench; `xadbench run` imports it)"
    typer.echo(f"{run_dir}: ok, {len(store.finished())} finished jobs{note}")


@methods_app.command("list", epilog="Example: xadbench methods list")
def methods_list() -> None:
    """List registered methods and the supervision each declares (read from the plugin's source
    without importing it where it is a literal; otherwise the plugin is imported)."""
    from xadbench.registry import methods as registry

    for name, target, dist in registry.describe():
        try:
            supervision = registry.declared(name, "supervision")
        except XadError as exc:
            supervision = f"BROKEN: {exc}"
        typer.echo(f"{name:<14} {supervision:<8} {target}  [{dist}]")


@methods_app.command("show", epilog="Example: xadbench methods show fcdd")
def methods_show(
    name: Annotated[str, typer.Argument(help="A registered method (see `xadbench methods list`).", show_default=False)],
) -> None:
    """A method's description and reference, supervision, hyperparameters with their defaults, and
    the values each preset sets per data set profile."""
    import inspect
    import json

    from xadbench.metrics.registry import list_metrics
    from xadbench.profiles import PRESETS, PROFILES
    from xadbench.registry import methods as registry

    plugin = registry.get(name)
    target = next((t for n, t, _ in registry.describe() if n == name), "")
    cls = getattr(plugin, "method_class", plugin)
    fixed = getattr(plugin, "fixed", {})
    about = " ".join(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].split())
    typer.echo(f"{name}  ({target})")
    typer.echo(f"about:        {about or '(no docstring)'}")
    typer.echo(f"supervision:  {plugin.supervision} (what it can learn from beyond nominal images)")
    if plugin.reference:
        typer.echo("reference:    yes (runs beside the methods as the floor their numbers are read against; never marked best)")
    typer.echo(f"maps:         {'smoothed by construction (not blurred again)' if plugin.maps_smoothed else 'blurred by the shared policy (--blur gaussian)'}")
    typer.echo(f"metrics:      {', '.join(list_metrics(headline=True))} (the metric registry's headline "
               "metrics; those of pixel and region unit where the data set has masks)")
    typer.echo("hyperparameters (defaults; --set KEY=VALUE overrides):")
    parameters = inspect.signature(cls.__init__).parameters
    for key in plugin.param_names():
        default = fixed.get(key, parameters[key].default)
        shown = "(required)" if default is inspect.Parameter.empty else json.dumps(default, default=str)
        typer.echo(f"  {key} = {shown}{'  (fixed by this variant)' if key in fixed else ''}")
    typer.echo("presets (values set per --preset and data set profile):")
    for preset in PRESETS:
        for profile in PROFILES:
            values = plugin.preset(preset, profile)
            text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in values.items()) or "(defaults)"
            typer.echo(f"  {preset:<5} {profile:<9} {text}")


@datasets_app.command("list", epilog="Example: xadbench datasets list")
def datasets_list() -> None:
    """List registered data sets."""
    from xadbench.registry import datasets as registry

    for name, target, dist in registry.describe():
        typer.echo(f"{name:<14} {target}  [{dist}]")


@data_app.command("synth", epilog="Example: xadbench data synth --out data/synthetic")
def data_synth(
    out: Annotated[Path, typer.Option(help="Folder to write the MVTec-AD-style classes into.")],
    seed: Annotated[int, typer.Option(help="Generator seed (same seed, same bytes).")] = 0,
) -> None:
    """Generate the built-in MVTec-AD-style data set in the exact MVTec-AD folder layout."""
    from xadbench.datasets.synthetic import generate

    path = generate(out, seed=seed)
    typer.echo(f"wrote {path}")


@weights_app.command("export", epilog="Example: xadbench weights export --out vgg11_bn_features.pt")
def weights_export(
    out: Annotated[Path, typer.Option(help="File to write (a state dict with torchvision's features.* keys).")] = Path("vgg11_bn_features.pt"),
) -> None:
    """Save torchvision's ImageNet VGG11-BN features (the paper's backbone) as a file for
    --weights, from torchvision's cache or downloaded once; prints its sha256."""
    from xadbench.backbones import export_features

    digest = export_features(out)
    typer.echo(f"wrote {out} (sha256 {digest})")


def _register_reports() -> None:
    from xadbench.cli.report_commands import compare, figures, report
    from xadbench.cli.study_commands import study_app
    from xadbench.cli.sensitivity_commands import register

    register(study_app)
    app.command("report")(report)
    app.command("compare")(compare)
    app.command("figures")(figures)
    app.add_typer(study_app, name="study")


_register_reports()


def main() -> None:
    app()
