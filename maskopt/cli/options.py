"""Every command-line option, declared once: its flag, type and help. Defaults are not here:
each command takes them from the dataclass of its library call (SearchOptions, ExportOptions,
TrainOptions) or the library function's constants, so the CLI and the Python API agree.

Help texts are printed through rich: a literal `[` is written `\\[` (rich markup would take
`[wandb]` for a style and drop it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# -- data --------------------------------------------------------------------------------

Data = Annotated[Path, typer.Option("--data", help="Data folder in the mask-competition layout.")]
RecordedData = Annotated[
    Path | None,
    typer.Option("--data", help="Data folder (default: the folder the study was searched on)."),
]
EvalData = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Data folder with eval/ (default: the folder a bundle was exported from; "
        "./data for a checkpoint).",
    ),
]
Crop = Annotated[
    str,
    typer.Option(
        "--crop", help="Face crop: 'center' (competition centre crop) or 'face' (Haar cascade)."
    ),
]
CheckpointCrop = Annotated[
    str, typer.Option("--crop", help="Face crop for a checkpoint (a bundle uses its own).")
]
Cache = Annotated[
    Path | None,
    typer.Option("--cache", help="Decoded-image cache folder (default <data>/.maskopt_cache)."),
]
SkipBad = Annotated[
    bool, typer.Option("--skip-bad", help="Drop people with bad files instead of stopping.")
]
RecordedSkipBad = Annotated[
    bool | None,
    typer.Option(
        "--skip-bad/--no-skip-bad",
        help="Drop people with bad files (default: as the search did).",
        show_default=False,
    ),
]
Device = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda | mps (auto: CUDA if there).")
]
Folds = Annotated[int, typer.Option("--folds", help="k of the person-grouped, stratified k-fold.")]

# -- synth ---------------------------------------------------------------------------------

SynthOut = Annotated[Path, typer.Argument(help="Folder to write (train/ and eval/ go inside).")]
People = Annotated[int, typer.Option("--people", help="People in train/ (7 photos each).")]
EvalPeople = Annotated[
    int | None,
    typer.Option("--eval-people", help="Other people in eval/ (default 2/3 of --people)."),
]
SynthSeed = Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")]
Size = Annotated[str, typer.Option("--size", help="Photo size WIDTHxHEIGHT.")]

# -- eda -------------------------------------------------------------------------------------

ReportOut = Annotated[Path, typer.Option("--out", help="The HTML report to write.")]

# -- the study -------------------------------------------------------------------------------

Storage = Annotated[
    str, typer.Option("--storage", help="Optuna storage URL (any SQLAlchemy URL Optuna supports).")
]
Study = Annotated[str, typer.Option("--study", help="Study name.")]
Artifacts = Annotated[
    str | None,  # not a Path: Path() would eat the // of s3://
    typer.Option(
        "--artifacts",
        help="Artifact folder or s3://bucket\\[/prefix] (default: beside the SQLite file; "
        "required with a server URL).",
    ),
]

# -- search ----------------------------------------------------------------------------------

Trials = Annotated[
    int,
    typer.Option(
        "--trials",
        help="Finished (complete + pruned) trials the study should hold, over all workers.",
    ),
]
Space = Annotated[
    str,
    typer.Option(
        "--space",
        help="Search space: auto (default on a GPU, cpu without), default, cpu, or a .yaml/.toml file.",
    ),
]
Epochs = Annotated[
    int | None, typer.Option("--epochs", help="Epochs per fold (default: the space's).")
]
TensorBoard = Annotated[
    Path | None,
    typer.Option(
        "--tensorboard",
        help="Folder for every trial's TensorBoard run (default: beside the SQLite file, "
        "maskopt.tensorboard/).",
    ),
]
Track = Annotated[
    list[str] | None,
    typer.Option(
        "--track",
        help="Also track each trial in wandb or mlflow (repeatable; the extras "
        "maskopt\\[wandb], maskopt\\[mlflow]).",
    ),
]
Sampler = Annotated[str, typer.Option("--sampler", help="tpe | random | grid | cmaes | gp.")]
Pruner = Annotated[str, typer.Option("--pruner", help="median | wilcoxon | hyperband | none.")]
StartupTrials = Annotated[
    int,
    typer.Option("--startup-trials", help="Trials run in full before the pruner may stop one."),
]
WarmupSteps = Annotated[
    int,
    typer.Option(
        "--warmup-steps",
        help="Steps (epochs; folds for wilcoxon) before a trial may be pruned "
        "(hyperband: its first rung).",
    ),
]
SearchSeed = Annotated[
    int | None, typer.Option("--seed", help="Sampler seed (worker i: seed+i) and fold seed.")
]
Timeout = Annotated[
    float | None, typer.Option("--timeout", help="Stop starting trials after this many seconds.")
]
Workers = Annotated[int, typer.Option("--workers", help="Worker processes on this machine.")]
Gpus = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        help="Workers on GPUs: 0,1 (one each), 0,0,1,1 (two on each), all (one per visible GPU).",
    ),
]
KeepModels = Annotated[
    int, typer.Option("--keep-models", help="Keep the fold models of the best K trials (0: none).")
]
Heartbeat = Annotated[
    int | None,
    typer.Option("--heartbeat", help="Seconds between a running trial's heartbeats (default 30)."),
]

# -- best and the export ---------------------------------------------------------------------

Top = Annotated[
    int,
    typer.Option(
        "--top",
        help="How many of the best complete trials to list; with --export, the largest "
        "average of the best trials considered (1: the best single only).",
    ),
]
Export = Annotated[
    bool, typer.Option("--export", help="Choose the ensemble, retrain it and write the bundle.")
]
BundleOut = Annotated[Path, typer.Option("--out", help="Bundle folder to write (--export).")]
Vote = Annotated[
    str, typer.Option("--vote", help="soft (mean of probabilities) or hard (majority).")
]
Retrain = Annotated[
    bool,
    typer.Option(
        "--retrain/--no-retrain",
        help="Retrain each member on all data (median best epoch), or keep its fold models, averaged.",
    ),
]
BundleTta = Annotated[
    bool, typer.Option("--tta", help="Use hflip test-time augmentation in the bundle.")
]
Onnx = Annotated[
    bool,
    typer.Option(
        "--onnx",
        help="Also write model.onnx: the whole ensemble as one ONNX graph "
        "(predict --runtime onnx; needs the onnx extra).",
    ),
]
Distill = Annotated[
    bool,
    typer.Option(
        "--distill",
        help="Also train one student model on the ensemble's out-of-fold probabilities: a "
        "single model's speed with most of the ensemble's accuracy (predict --student).",
    ),
]
StudentBackbone = Annotated[
    str | None,
    typer.Option(
        "--student",
        help="The student's timm backbone (with --distill; default: the best trial's).",
    ),
]
Trial = Annotated[int | None, typer.Option("--trial", help="A trial number (with --config-out).")]
ConfigOut = Annotated[
    Path | None,
    typer.Option("--config-out", help="Write --trial's TrainConfig here (.json/.yaml/.toml)."),
]

# -- train -----------------------------------------------------------------------------------

Config = Annotated[Path, typer.Option("--config", help="Config file: .json, .yaml, .yml or .toml.")]
Fold = Annotated[int, typer.Option("--fold", help="Which fold to validate on (0-based).")]
FoldSeed = Annotated[int, typer.Option("--fold-seed", help="Seed of the fold split.")]
Full = Annotated[bool, typer.Option("--full", help="Train on all the data (no validation).")]
RunOut = Annotated[
    Path | None, typer.Option("--out", help="Output folder (default runs/<config name>).")
]

# -- predict ---------------------------------------------------------------------------------

Source = Annotated[
    Path,
    typer.Argument(
        help="A checkpoint (model.pt from maskopt train) or a bundle folder (maskopt best --export)."
    ),
]
Images = Annotated[list[Path] | None, typer.Argument(help="Image files or folders of images.")]
CsvOut = Annotated[
    Path | None, typer.Option("--out", help="Write a CSV here instead of printing a table.")
]
OnEval = Annotated[
    bool,
    typer.Option(
        "--eval",
        help="Predict <data>/eval (info.csv order); prints the held-out F1 and its 95% "
        "interval if solution.csv is there.",
    ),
]
CheckpointTta = Annotated[
    bool,
    typer.Option("--tta", help="Average with the mirrored image (a bundle uses its own setting)."),
]
UseStudent = Annotated[
    bool,
    typer.Option(
        "--student", help="Predict with the bundle's distilled student (best --export --distill)."
    ),
]
Runtime = Annotated[
    str,
    typer.Option(
        "--runtime",
        help="torch, or onnx: a bundle's model.onnx in onnxruntime on the CPU "
        "(maskopt best --export --onnx; needs the onnx extra).",
    ),
]

# -- spaces, dashboard -----------------------------------------------------------------------

SpaceName = Annotated[str, typer.Argument(help="A built-in space name or a .yaml/.toml file.")]
Host = Annotated[str, typer.Option("--host", help="Address to listen on.")]
Port = Annotated[int, typer.Option("--port", help="Port to listen on.")]
