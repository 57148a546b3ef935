"""`xadbench study sigma` and `xadbench study receptive-field`: the paper's sensitivity studies
(appendix B and A) as commands over one job grid each (`xadbench.studies.sigma`,
`xadbench.studies.receptive_field`), run with `grid.run_grid` into --out, then a table and a
figure (`xadbench.reports.sensitivity`). Every option is checked before the first job starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from xadbench.cli.options import (
    DeviceOption,
    PresetOption,
    PretrainedOption,
    ProtocolOption,
    WeightsOption,
)
from xadbench.errors import XadError
from xadbench.options import (
    check_device,
    check_weights_file,
    parse_seeds,
    split_list,
)

CompareOption = Annotated[Literal["none", "paper"], typer.Option(
    help="paper: add the paper's published value of each setting (a mean over all classes of the data set).")]
DatasetOption = Annotated[str, typer.Option(help="Registered data set name, or a folder-per-class path.")]
RootOption = Annotated[str | None, typer.Option(help="Where the data set lives.")]
ClassesOption = Annotated[str, typer.Option(help="Comma-separated class names, or 'all'.")]
SeedsOption = Annotated[str, typer.Option(help="Comma-separated seeds (the table averages over them).")]
EpochsOption = Annotated[int | None, typer.Option(show_default=False, help="Train this many epochs instead of the study's preset (a quick look).")]

SIGMA_EXAMPLE = ("Example: xadbench study sigma --root ~/data/mvtec_ad --classes bottle "
                 "--weights vgg11_bn_features.pt --compare paper --out runs/sigma")
RF_EXAMPLE = ("Example: xadbench study receptive-field --root ~/data/mvtec_ad --classes bottle "
              "--weights vgg11_bn_features.pt --compare paper --out runs/receptive-field")


def check_epochs(epochs: int | None) -> None:
    if epochs is not None and epochs < 1:
        raise XadError(f"--epochs {epochs}: train at least 1 epoch")


def _prepare(dataset: str, root: str | None, classes: str, seeds: str, epochs: int | None, preset: str, device: str,
             weights: str | None, out: Path) -> tuple[list[str], tuple[int, ...], str]:
    """The checks a study makes before its first job (options, out folder, every asked-for
    class); returns the classes, the seeds and the data set's profile."""
    from xadbench import runner
    from xadbench.profiles import get_profile
    from xadbench.validation import check_classes, check_out_folder

    seed_list = parse_seeds(seeds)
    check_epochs(epochs)
    check_device(device)
    check_weights_file(weights)
    check_out_folder(out)
    data = runner.open_dataset(dataset, root)
    class_list = data.classes() if classes == "all" else split_list(classes)
    if not class_list:
        raise XadError(f"--classes {classes!r}: no classes; e.g. --classes bottle")
    check_classes(data, class_list, get_profile(data.profile).image_size[preset])
    return class_list, seed_list, data.profile


def _run(specs: list, out: Path, command: str) -> None:
    from xadbench import grid, run_folder
    from xadbench.cli.console import run_progress

    run_folder.write_config(out, {"command": command, "jobs": [s.job_id for s in specs]})
    with run_progress(len(specs)) as progress:
        grid.run_grid(specs, out, progress)


def sigma(
    dataset: DatasetOption = "mvtec",
    root: RootOption = None,
    classes: ClassesOption = "bottle",
    seeds: SeedsOption = "0",
    sigmas: Annotated[str, typer.Option(help="σ values in pixels at the paper's 224 px (Table 5), scaled to the preset's image size.")] = "4,6,8,10,12,14,16",
    preset: PresetOption = "cpu",
    protocol: ProtocolOption = "unsupervised",
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    pretrained: PretrainedOption = True,
    epochs: EpochsOption = None,
    compare: CompareOption = "none",
    out: Annotated[Path, typer.Option(help="Run folder: results, checkpoints, tables/sigma.csv, figures/sigma.*.")] = Path("runs/sigma"),
) -> None:
    """The σ study (paper appendix B, Table 5): FCDD's pixel AUC as the σ of its heatmap
    upsampling grows. ONE FCDD model per class and seed is trained (the preset's FCDD job, e.g.
    20 epochs on cpu) and its test images are rescored at every σ without retraining: σ only
    changes the upsampling (unsupervised training does not use it). A rerun skips finished jobs."""
    from xadbench.reports import sensitivity
    from xadbench.studies import sigma as study

    sigma_values = study.parse_sigmas(sigmas)
    class_list, seed_list, profile = _prepare(dataset, root, classes, seeds, epochs, preset, device, weights, out)
    specs = study.plan_jobs(dataset, class_list, seeds=seed_list, preset=preset, protocol=protocol, root=root,
                            weights=weights, pretrained=pretrained, device=device,
                            params=(("epochs", epochs),) if epochs is not None else ())
    typer.echo(f"sigma: {len(specs)} FCDD jobs, rescored at σ = {', '.join(f'{s:g}' for s in sigma_values)} -> {out}", err=True)
    _run(specs, out, "study sigma")
    rows = study.rescore(specs, out, sigma_values, device)
    table = sensitivity.sigma_table(rows, compare)
    path = sensitivity.write_table(table, out, "sigma")
    title = (f"{Path(dataset).name} / {', '.join(class_list)}: FCDD pixel AUC against the upsampling σ "
             f"({preset} preset, {protocol}); maps of {class_list[0]}, seed {seed_list[0]}")
    figures = sensitivity.write_figure(sensitivity.sigma_figure(table, out, profile, title), out, "sigma")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"table:   {path}")
    typer.echo(f"figures: {', '.join(str(p) for p in figures)}")


def receptive_field(
    dataset: DatasetOption = "mvtec",
    root: RootOption = None,
    classes: ClassesOption = "bottle",
    seeds: SeedsOption = "0",
    kernels: Annotated[str | None, typer.Option(show_default=False, help="Odd kernel sizes (default: the paper's: 3,5,...,13 for MVTec-AD, 3,5,...,17 for CIFAR-10).")] = None,
    reference: Annotated[bool, typer.Option("--reference/--no-reference", help="Also train the profile's usual FCDD net (appendix D; pretrained VGG11-BN for MVTec-AD).")] = True,
    preset: PresetOption = "cpu",
    protocol: ProtocolOption = "unsupervised",
    device: DeviceOption = "auto",
    weights: WeightsOption = None,
    pretrained: PretrainedOption = True,
    epochs: EpochsOption = None,
    compare: CompareOption = "none",
    out: Annotated[Path, typer.Option(help="Run folder: results, predictions, tables/receptive_field.csv, figures/receptive_field.*.")] = Path("runs/receptive-field"),
) -> None:
    """The receptive-field study (paper appendix A, Tables 3 and 4): FCDD with appendix A's nets,
    trained from scratch, whose receptive field grows with the kernel size k of their convs
    (MVTec-AD: 53 ... 243 px for k = 3 ... 13; CIFAR-10: 18 ... 32 px for k = 3 ... 17). The cpu
    preset trains the narrow nets for 6 epochs with Adam (lr 1e-3, batch 16) instead of the
    paper's schedule, so that six nets train on one MVTec-AD class in minutes; the paper preset
    uses the paper's schedule and widths. A rerun skips finished jobs."""
    from xadbench.reports import sensitivity
    from xadbench.studies import receptive_field as study

    network = study.network_of(dataset, root)
    kernel_list = study.parse_kernels(kernels, network)
    class_list, seed_list, profile = _prepare(dataset, root, classes, seeds, epochs, preset, device, weights, out)
    specs = study.plan_jobs(dataset, class_list, kernel_list, seeds=seed_list, preset=preset, protocol=protocol,
                            root=root, weights=weights, pretrained=pretrained, device=device, reference=reference,
                            epochs=epochs)
    typer.echo(f"receptive-field: {len(specs)} FCDD jobs (kernels {', '.join(map(str, kernel_list))}) -> {out}", err=True)
    _run(specs, out, "study receptive-field")
    rows = study.rows(specs, out)
    metric = study.PAPER_METRIC[network]
    if metric not in rows or rows[metric].isna().all():
        metric = "image_auc"  # a data set without pixel ground truth
    paper_dataset = {"vgg": "MVTec-AD", "cifar10": "CIFAR-10"}[network]
    table = sensitivity.receptive_field_table(rows, metric, compare, paper_dataset)
    path = sensitivity.write_table(table, out, "receptive_field")
    title = (f"{Path(dataset).name} / {', '.join(class_list)}: FCDD {metric.replace('_', ' ')} against the receptive "
             f"field ({preset} preset, {protocol}); maps of {class_list[0]}, seed {seed_list[0]}")
    figure = sensitivity.receptive_field_figure(table, rows, out, metric, profile, title)
    figures = sensitivity.write_figure(figure, out, "receptive_field")
    typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"table:   {path}")
    typer.echo(f"figures: {', '.join(str(p) for p in figures)}")


def register(study_app: typer.Typer) -> None:
    """Add both commands to the `xadbench study` group."""
    study_app.command("sigma", epilog=SIGMA_EXAMPLE)(sigma)
    study_app.command("receptive-field", epilog=RF_EXAMPLE)(receptive_field)
