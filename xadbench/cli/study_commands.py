"""`xadbench study ...`: the paper's studies as commands, thin Typer wrappers that build a
study's grid (`xadbench.studies`), run it with `grid.run_grid` into --out and write its
tables and figures (`xadbench.reports`). The main CLI registers `study_app`; its
`OneLineErrors` turns every XadError raised here into one line and exit code 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from xadbench.cli.options import (
    DeviceOption,
    PresetOption,
    PretrainedOption,
    WeightsOption,
)
from xadbench.errors import XadError
from xadbench.options import (
    check_device,
    check_weights_file,
    parse_seeds,
    split_list,
)
from xadbench.validation import check_out_folder

study_app = typer.Typer(
    no_args_is_help=True, add_completion=False, context_settings={"help_option_names": ["-h", "--help"]},
    help="The paper's studies: the Clever Hans effect (sec. 4.3, Figure 8) and the Outlier Exposure size (Figure 6).",
    epilog="Example: xadbench study clever-hans --root ~/data/imagenette --max-nominal 300",
)

CLEVER_HANS_EXAMPLE = (
    "Example: xadbench study clever-hans --root ~/data/imagenette --anomalous-class n03888257 "
    "--methods fcdd,grad,ae --weights vgg11_bn_features.pt --max-nominal 300 "
    "--out runs/clever-hans  (paper form: --voc-root ~/data/voc --imagenet-root ~/data/imagenet --max-nominal 20000)"
)
OE_SIZE_EXAMPLE = (
    "Example: xadbench study oe-size --dataset ~/data/cifar10_jpg --oe ~/data/cifar10_jpg "
    "--classes airplane --limits 2,8,128,2048,all --methods fcdd,grad,ae --out runs/oe-size"
)


@study_app.command("clever-hans", epilog=CLEVER_HANS_EXAMPLE)
def clever_hans(
    root: Annotated[str | None, typer.Option(help="Controlled form: the folder-per-class data set (train/<class>/, val|test/<class>/).")] = None,
    dataset: Annotated[str, typer.Option(help="Controlled form: 'folder' (the --root tree) or a registered one-vs-rest data set.")] = "folder",
    anomalous_class: Annotated[str, typer.Option(help="Controlled form: the class that is anomalous (known in training, watermarked). Default: Imagenette's parachute.")] = "n03888257",
    fraction: Annotated[float, typer.Option(help="Controlled form: share of the anomalous class's training images that get the watermark.")] = 0.2,
    voc_root: Annotated[str | None, typer.Option(help="Paper form: Pascal VOC 2007 (holds VOCdevkit/VOC2007).")] = None,
    imagenet_root: Annotated[str | None, typer.Option(help="Paper form: ImageNet-1k tree (train/<wnid>/, val/<wnid>/), the nominal set.")] = None,
    form: Annotated[Literal["auto", "controlled", "paper"], typer.Option(help="auto (paper when --voc-root/--imagenet-root is given) | controlled | paper.")] = "auto",
    methods: Annotated[str, typer.Option(help="Comma-separated methods; those that cannot use anomalies (ae) run once, as a reference.")] = "fcdd,grad,ae",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (the table shows mean ± std over them).")] = "0",
    preset: PresetOption = "cpu",
    device: DeviceOption = "auto",
    image_size: Annotated[int | None, typer.Option(help="Input size in pixels (default: the preset's, 64 px for ImageNet-like images on cpu); the watermark scales with it.")] = None,
    weights: WeightsOption = None,
    pretrained: PretrainedOption = True,
    max_nominal: Annotated[int | None, typer.Option(help="Use at most N nominal training images (a seeded random subset), for CPU budgets.")] = None,
    columns: Annotated[int, typer.Option(help="Images in the figure.")] = 8,
    out: Annotated[Path, typer.Option(help="Run folder: results.csv, predictions/, tables/clever_hans.*, figures/clever_hans.*.")] = Path("runs/clever-hans"),
) -> None:
    """The Clever Hans study (paper sec. 4.3): train with the anomalous class known and a spurious
    watermark on some of its images, and measure whether the heatmaps point at the watermark.
    A rerun skips finished jobs."""
    from xadbench import grid, run_folder
    from xadbench.cli.console import run_progress
    from xadbench.reports import clever_hans as report
    from xadbench.studies import clever_hans as ch

    if form == "auto":
        form = "paper" if (voc_root or imagenet_root) else "controlled"
    if form == "controlled" and root is None and dataset == "folder":
        raise XadError("--root is missing: pass a folder-per-class data set, e.g. --root ~/data/imagenette "
                       "(or the paper form: --voc-root DIR --imagenet-root DIR)")
    if columns < 1:
        raise XadError(f"--columns {columns}: need at least 1 image in the figure")
    check_device(device)
    check_out_folder(out)
    config = ch.StudyConfig(
        form=form, methods=tuple(dict.fromkeys(split_list(methods))), seeds=parse_seeds(seeds), root=root, dataset=dataset,
        anomalous_class=anomalous_class, fraction=fraction, voc_root=voc_root, imagenet_root=imagenet_root,
        preset=preset, image_size=image_size, max_nominal=max_nominal, weights=weights, pretrained=pretrained,
        device=device,
    )
    study = ch.open_study(config)
    specs = ch.plan_jobs(study)
    typer.echo(f"clever-hans ({form}): anomalous class {study.class_name}, {study.image_size} px, profile "
               f"{study.profile}, {len(specs)} jobs -> {out}", err=True)
    run_folder.write_config(out, {"command": "study clever-hans", "jobs": [s.job_id for s in specs]})
    with run_progress(len(specs)) as progress:
        results = ch.study_results(specs, grid.run_grid(specs, out, progress))
    tables = report.write_table(results, out)
    figures = report.write_figure(results, out, columns=columns)
    summary = report.summarise(results)
    shown = [c for c in report.METRIC_LABELS if c in summary.columns]
    typer.echo(summary[["method", "condition", "seeds", *shown]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    typer.echo(f"box area share: {summary['box_share'].iloc[0]:.3f}")
    typer.echo(f"results: {out / 'results.csv'}")
    typer.echo(f"tables:  {', '.join(str(p) for p in tables)}")
    typer.echo(f"figures: {', '.join(str(p) for p in figures)}")


@study_app.command("oe-size", epilog=OE_SIZE_EXAMPLE)
def oe_size(
    dataset: Annotated[str, typer.Option(help="Registered data set name, or a folder-per-class path.")],
    oe: Annotated[str, typer.Option(help="Outlier Exposure source: a registered data set name or a folder path.")],
    classes: Annotated[str, typer.Option(help="The nominal class (one; the option is named as in `run`).")],
    root: Annotated[str | None, typer.Option(help="Where the data set (and a registered OE source) lives.")] = None,
    limits: Annotated[str, typer.Option(help="OE sizes, comma-separated numbers or 'all' (the paper: 2,8,128,2048,all).")] = "2,8,128,2048,all",
    methods: Annotated[str, typer.Option(help="Comma-separated methods; those that cannot use OE (ae) run once.")] = "fcdd,grad,ae",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds (the figure shows the first).")] = "0",
    preset: PresetOption = "cpu",
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    pretrained: PretrainedOption = True,
    oe_exclude: Annotated[str, typer.Option(help="OE classes to leave out: 'auto' (the nominal class when the OE source is the data set itself), 'none', or names.")] = "auto",
    eta: Annotated[float, typer.Option(help="Quantile of the heatmap normalisation (appendix C; CIFAR-10's Figure 6: 0.85).")] = 0.85,
    norm: Annotated[Literal["local", "global"], typer.Option(help="local (each heatmap against itself, as Figure 6) | global (the label-balanced test set).")] = "local",
    samples: Annotated[int, typer.Option(help="Anomalous test samples in the figure.")] = 3,
    out: Annotated[Path, typer.Option(help="Run folder: results.csv, predictions/, tables/oe_size.csv, figures/oe_size.*.")] = Path("runs/oe-size"),
) -> None:
    """The Outlier Exposure size study (paper Figure 6): heatmaps of models trained with 2, 8, ...
    OE images, next to a method that cannot use OE. A rerun skips finished jobs."""
    from xadbench import run_folder
    from xadbench.cli.console import run_progress
    from xadbench.reports import oe_size as report
    from xadbench.studies import oe_size as oe_study

    method_names = list(dict.fromkeys(split_list(methods)))
    limit_values = oe_study.parse_limits(limits)
    seed_values = parse_seeds(seeds)
    check_weights_file(weights)
    check_device(device)
    check_out_folder(out)
    if samples < 1:
        raise XadError(f"--samples {samples}: need at least 1 sample in the figure")
    if not 0 < eta <= 1:
        raise XadError(f"--eta {eta} is out of range; use a quantile in (0, 1], e.g. --eta 0.85")
    if len(split_list(classes)) != 1:
        raise XadError(f"--classes {classes!r}: the OE-size study takes one nominal class, e.g. --classes airplane")
    class_name = oe_study.check_inputs(dataset, split_list(classes)[0], oe, root, method_names, preset)
    exclude: Any = {"auto": oe_study.AUTO, "none": ()}.get(oe_exclude, tuple(split_list(oe_exclude)))
    specs = oe_study.plan_jobs(dataset, class_name, oe, methods=method_names, limits=limit_values, seeds=seed_values,
                               root=root, preset=preset, oe_exclude=exclude, weights=weights, pretrained=pretrained,
                               device=device)
    typer.echo(f"oe-size: {len(specs)} jobs -> {out}", err=True)
    run_folder.write_config(out, {"command": "study oe-size", "jobs": [s.job_id for s in specs]})
    with run_progress(len(specs)) as progress:
        results = oe_study.run(specs, out, progress)
    table = report.write_table(specs, results, out)
    figures = report.write_figure(specs, out, eta=eta, norm=norm, samples=samples)
    typer.echo(f"results: {out / 'results.csv'}")
    typer.echo(f"table:   {table}")
    typer.echo(f"figures: {', '.join(str(p) for p in figures)}")
