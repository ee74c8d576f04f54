# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train the head-pose predictor: float, then quantization-aware, then full-int8 TFLite
#
# This notebook walks through what `qa-headpose train` and `qa-headpose export` do, one step per
# section, by calling the `qa_headpose` package (it copies none of its code, so it cannot drift
# from it): **data** → **model** → **training** (float, then QAT) → **export** (full int8) →
# **evaluation** of the `.tflite` → **benchmark** → **prediction** on the sample image.
#
# Data flow: uint8 BGR face crop `(H, W, 3)` → `preprocess.to_model_input` → float32
# `(1, S, S, 3)` BGR pixels in [0, 255] → Keras model or `TFLiteRunner` (int8) → float32 `(1, 3)`
# degrees → `HeadPose(yaw, pitch, roll)`.
#
# * **Full mode** (`FAST = False`, the default) runs the recipe of
#   `qa-headpose train --preset default` and `qa-headpose export`: the ImageNet-initialised
#   128x128 model trained on the 1,154 labelled AFLW2000-3D train faces, the one in
#   `weights/teacher_v1/` that both shipped models start from and learn from (about 30 minutes on
#   2 CPU cores). The shipped `accurate` and `fast` models add the AFLW_extra faces on top
#   (`qa-headpose train --preset accurate|fast`, see `docs/extra_faces.md`).
# * **Fast mode** (`FAST = True`) is a smoke run on tiny settings (the `tiny` preset, 60 faces,
#   one float and one QAT epoch, the int8 export only); `tests/test_notebook.py` runs it headless.
#
# Set the parameters in the next cell. The data, AFLW2000-3D, is for research only: keep it, and
# any output or figure that shows its faces, out of the repository. This notebook is committed
# with the outputs of a full-mode run (`python tools/run_notebook.py`; its date and machine are
# printed below), except those of the cells tagged `dataset-faces`, which show AFLW2000 faces:
# the tool strips them. `RUN_DIR` and `OUT_DIR` default to the git-ignored `runs/`.
#
# The source of this notebook is `notebooks/train_pose_predictor.py`, a jupytext percent script paired
# with the .ipynb: edit the script, then `jupytext --sync notebooks/train_pose_predictor.py`.

# %% tags=["parameters"]
# Parameters (a test replaces or extends this cell). Relative paths are relative to notebooks/.
DATA_DIR = "../../shared/data/AFLW2000"  # AFLW2000-3D folder (research-only: never commit it or figures of it)
RUN_DIR = "../runs/notebook"  # the training run folder: config.json, float/, qat/, summary.json
OUT_DIR = "../runs/notebook/export"  # the .tflite models, figures/ and benchmark.json
FAST = False  # True: a smoke run (tiny preset, MAX_FACES faces, 1 + 1 epochs, int8 only)
PRESET = "default"  # a name of qa_headpose.training.presets.PRESETS; "default" = the ImageNet-initialised recipe
EPOCHS = None  # float epochs (None: the preset's)
QAT_EPOCHS = None  # quantization-aware epochs (None: the preset's)
INPUT_SIZE = None  # model input side in pixels (None: the preset's)
ALPHA = None  # MobileNetV2 width multiplier (None: the preset's)
MAX_FACES = None  # train on at most this many faces (None: all; FAST: 60)
RESUME = False  # continue the run in RUN_DIR from its last checkpoint

# %%
import datetime
import importlib
import importlib.util
import json
import os
import platform
import shlex
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from IPython.display import Image, Markdown, display
from matplotlib.figure import Figure


def find_repo(start: Path) -> Path | None:
    """The qa-headpose checkout that holds ``start``, or None."""
    for folder in (start, *start.parents):
        if (folder / "setup.cfg").is_file() and (folder / "qa_headpose" / "__init__.py").is_file():
            return folder
    return None


REPO = find_repo(Path.cwd().resolve())
if REPO is not None and importlib.util.find_spec("qa_headpose") is None:
    sys.path.insert(0, str(REPO))  # not installed (`pip install -e .`): use this checkout
BASE = REPO / "notebooks" if REPO is not None else Path.cwd()  # relative parameters start here

import qa_headpose
from qa_headpose import evaluation
from qa_headpose.training import presets, workflow
from qa_headpose.training.config import ExportConfig


def optional(name: str):
    """A qa_headpose module that some sections need, or None (those sections are then skipped)."""
    try:
        return importlib.import_module(f"qa_headpose.{name}")
    except ImportError as exc:
        print(f"note: qa_headpose.{name} is not available ({exc}); the sections that need it are skipped")
        return None


draw, detect, bench, registry = (
    optional(n) for n in ("inference.draw", "inference.detect", "bench", "inference.registry")
)

if FAST:
    PRESET = "tiny"
    MAX_FACES = MAX_FACES or 60
    EPOCHS, QAT_EPOCHS = EPOCHS or 1, QAT_EPOCHS or 1
VARIANTS = ("int8",) if FAST else ("int8", "float32", "dynamic")
data_dir, run_dir, out_dir = ((BASE / p).resolve() for p in (DATA_DIR, RUN_DIR, OUT_DIR))
fig_dir = out_dir / "figures"
fig_dir.mkdir(parents=True, exist_ok=True)


def show(fig: Figure, name: str) -> None:
    """Saves a figure as ``OUT_DIR/figures/<name>.png`` and displays it."""
    path = fig_dir / f"{name}.png"
    fig.savefig(path, dpi=90)
    display(Image(filename=str(path)))


# `qa-headpose train` builds its configs from its flags with this same function: the same recipe.
overrides = {"epochs": EPOCHS, "qat_epochs": QAT_EPOCHS, "input_size": INPUT_SIZE, "alpha": ALPHA}
overrides = {name: value for name, value in overrides.items() if value is not None}
model_cfg, train_cfg, qat_cfg, data_paths, _extra = presets.train_configs(PRESET, data=[str(data_dir)], **overrides)
argv = ["train", "--preset", PRESET, "--data", str(data_dir), "--out", str(run_dir)]
argv += [arg for name, value in overrides.items() for arg in (f"--{name.replace('_', '-')}", str(value))]


def cpu_name() -> str:
    """The processor's model name (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


print(
    f"run {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {cpu_name()} ({os.cpu_count()} cores, "
    f"{platform.system()} {platform.machine()}), Python {platform.python_version()}, {'fast' if FAST else 'full'} mode"
)
print(f"qa_headpose {qa_headpose.__version__} from {Path(qa_headpose.__file__).parent}")
print("the same recipe on the command line: qa-headpose", shlex.join(argv))
print(model_cfg, train_cfg, qat_cfg, sep="\n")

# %% [markdown]
# ## 1. Data
#
# `workflow.prepare_data` loads every image of the AFLW2000-3D folder with its `.mat` label,
# keeps the faces whose three angles lie within ±99° (the standard protocol) and splits them
# with the committed validation list `qa_headpose/splits/aflw2000_val.txt`. The model sees the
# FSA-Net crop: the landmark box grown by 0.6 of its side on each side, resized to the input size.
# Below, 16 training crops with their labelled axes (red: x, towards the subject's left ear;
# green: y, up; blue: z, out of the face).

# %%
prepared = workflow.prepare_data(data_paths)
if MAX_FACES:  # fast mode: spread the subset over the whole (name-sorted) set

    def spread(faces, n):
        return faces.subset(np.linspace(0, len(faces) - 1, min(n, len(faces))).astype(int))

    train, val = spread(prepared.train, MAX_FACES), spread(prepared.val, max(12, MAX_FACES // 3))
    report = {**prepared.report, "train_faces": len(train), "val_faces": len(val), "max_faces": MAX_FACES}
    prepared = workflow.PreparedData(train, val, report)
print(json.dumps(prepared.report, indent=1))

# %% tags=["dataset-faces"]
DISPLAY = 128  # pixels per face in the figures (the model sees model_cfg.input_size)
grid = prepared.train.subset(np.linspace(0, len(prepared.train) - 1, min(16, len(prepared.train))).astype(int))
fig = Figure(figsize=(14, 4.2), layout="constrained")
for ax, crop, pose, name in zip(fig.subplots(2, 8).flat, grid.crops(DISPLAY), grid.poses, grid.names):
    if draw is not None:
        draw.draw_axes(crop, pose, (DISPLAY / 2, DISPLAY / 2), DISPLAY * 0.4)
    ax.imshow(crop[:, :, ::-1])
    ax.set_title(f"{name}\ny {pose[0]:.0f} p {pose[1]:.0f} r {pose[2]:.0f}", fontsize=7)
    ax.axis("off")
show(fig, "data_crops")

# %% [markdown]
# ## 2. The model
#
# `model.build_model` builds MobileNetV2 as one flat functional graph (a fixed `input_norm`
# 1x1 convolution, the backbone, global average pooling, dropout, `Dense(3)` in degrees).
# `qat.make_qat_model` wraps it for quantization-aware training: tfmot inserts fake-quant nodes
# that simulate int8 weights and activations during training. Convolutions quantize their
# weights, and the activation after each Conv-BN(-ReLU) group is quantized once (BatchNorm is
# folded into the convolution at export). The pose output has a fixed range of about ±100°.

# %%
from qa_headpose.training.model import build_model
from qa_headpose.training.qat import OUTPUT_MAX_DEG, OUTPUT_MIN_DEG, count_fake_quant_layers, make_qat_model

float_model = build_model(model_cfg)
float_model.summary(line_length=110)

# %%
qat_model = make_qat_model(float_model)
print(
    f"fake-quant layers: {count_fake_quant_layers(float_model)} in the float model, "
    f"{count_fake_quant_layers(qat_model)} of {len(qat_model.layers)} layers in the QAT model"
)
# Where the fake-quant nodes are: what each wrapper's QuantizeConfig quantizes.
where = []
for layer in qat_model.layers:
    config = getattr(layer, "quantize_config", None)
    if config is None:
        if type(layer).__name__ == "QuantizeLayer":
            where.append((layer.name, "model input", "activation"))
        continue
    parts = [
        label
        for label, quantizers in (
            ("weights", config.get_weights_and_quantizers(layer.layer)),
            ("activation", config.get_activations_and_quantizers(layer.layer)),
            ("output", config.get_output_quantizers(layer.layer)),
        )
        if quantizers
    ]
    where.append((layer.name, type(layer.layer).__name__, " + ".join(parts) or "none (folded or pass-through)"))
for (kind, parts), count in Counter((kind, parts) for _, kind, parts in where).most_common():
    print(f"{count:4d} x {kind:24s} {parts}")
print("first layers:", *(f"  {n:36s} {k:24s} {p}" for n, k, p in where[:10]), sep="\n")
print("head:", *(f"  {n:36s} {k:24s} {p}" for n, k, p in where[-4:]), sep="\n")
step = (OUTPUT_MAX_DEG - OUTPUT_MIN_DEG) / 255
print(f"pose output range: [{OUTPUT_MIN_DEG:.2f}, {OUTPUT_MAX_DEG:.2f}] degrees, int8 step {step:.3f} degrees")

# %% [markdown]
# ## 3. Training: float, then quantization-aware
#
# `workflow.train_run` trains the float model (AdamW, warm-up then cosine decay, on-the-fly
# augmentation with exact labels), keeps the weights with the lowest validation MAE, starts the
# QAT model from them and trains it the same way. It writes the run folder: `config.json`,
# `float/` and `qat/` (`log.csv`, `best.weights.h5`, resumable checkpoints) and `summary.json`.
# The loss is the MAE over the three angles, so `val_loss` is the mean validation MAE in degrees.

# %%
summary = workflow.train_run(run_dir, prepared, model_cfg, train_cfg, qat_cfg, resume=RESUME, verbose=2)
for phase in ("float", "qat"):
    m = summary[phase]["val"]
    print(
        f"{phase:5s} Keras val MAE: yaw {m['yaw']:.2f}  pitch {m['pitch']:.2f}  roll {m['roll']:.2f}  "
        f"mean {m['mean']:.2f} deg  ({summary[phase]['seconds']} s)"
    )

# %%
logs = {p: np.atleast_1d(np.genfromtxt(run_dir / p / "log.csv", delimiter=",", names=True)) for p in ("float", "qat")}
fig = Figure(figsize=(13, 4), layout="constrained")
ax_loss, ax_mae = fig.subplots(1, 2)
offset = 0
for phase, log in logs.items():
    epochs = offset + log["epoch"] + 1
    ax_loss.plot(epochs, log["loss"], marker=".", label=f"{phase} train")
    ax_loss.plot(epochs, log["val_loss"], marker=".", label=f"{phase} val")
    for angle in ("yaw", "pitch", "roll"):
        ax_mae.plot(epochs, log[f"val_{angle}_mae"], marker=".", label=f"{phase} {angle}")
    offset = epochs[-1]
for ax, title in ((ax_loss, "loss = mean MAE (degrees)"), (ax_mae, "validation MAE per angle (degrees)")):
    ax.axvline(len(logs["float"]) + 0.5, color="gray", linestyle=":")
    ax.set(xlabel="epoch (float, then QAT)", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
show(fig, "training_curves")

# %% [markdown]
# ## 4. Export: full int8
#
# `workflow.export_run` converts the best QAT weights with a representative dataset of training
# crops into a full-integer `.tflite` (int8 input and output, every op int8), and writes its
# `.json` (input size, quantization, angle order, crop). In full mode it also writes the float32
# and dynamic-range models of the float weights, for comparison.

# %%
from qa_headpose.inference.runtime import TFLiteRunner

written = workflow.export_run(run_dir, out_dir, prepared.train, ExportConfig(), VARIANTS)
models = {v: out_dir / f"headpose_{v}.tflite" for v in written}
rows = ["| model | size (KB) | input | output | fully int8 | convert (s) |", "|---|---|---|---|---|---|"]
for v, meta in written.items():
    rows.append(
        f"| {models[v].name} | {meta['file_size_bytes'] / 1024:.0f} | {meta['input_dtype']} | "
        f"{meta['output_dtype']} | {meta['fully_int8']} | {meta['convert_seconds']} |"
    )
for phase in ("float", "qat"):
    h5 = run_dir / phase / "best.weights.h5"
    rows.append(f"| {phase}/best.weights.h5 (Keras) | {h5.stat().st_size / 1024:.0f} | float32 | float32 | | |")
display(Markdown("\n".join(rows)))
assert written["int8"]["fully_int8"], "the int8 model is not fully int8"

# %%
# The interpreter lists XNNPACK's DELEGATE node beside the model's own ops: left out here.
ops = {v: [op for op in TFLiteRunner(path).describe_ops() if op["op"] != "DELEGATE"] for v, path in models.items()}
names = sorted({op["op"] for v in ops for op in ops[v]})
rows = ["| op | " + " | ".join(ops) + " |", "|---" * (len(ops) + 1) + "|"]
for name in names:
    counts = [Counter(op["op"] for op in ops[v])[name] for v in ops]
    rows.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
display(Markdown("\n".join(rows)))
dtypes = Counter(d for op in ops["int8"] for d in op["inputs"] + op["outputs"])
print("tensor dtypes of the int8 model's ops:", dict(dtypes))

# %% [markdown]
# ## 5. Evaluation of the `.tflite` on the validation split
#
# `evaluation.evaluate_model` runs a `.tflite` through `TFLiteRunner` (LiteRT) on the FSA-Net
# crops of the validation faces. The Keras rows come from the run's `summary.json`; the shipped
# model is listed when the package has one.

# %%
from qa_headpose.inference.estimator import DEFAULT_MODEL as shipped

val = prepared.val
results = {f"Keras {p}": summary[p]["val"] for p in ("float", "qat")}
preds = {}
for v, path in models.items():
    results[path.name], preds[v] = evaluation.evaluate_model(path, val)
if shipped.is_file():
    results[f"shipped {shipped.name}"], _ = evaluation.evaluate_model(shipped, val)
rows = ["| model | yaw | pitch | roll | mean | faces |", "|---|---|---|---|---|---|"]
for name, m in results.items():
    angles = " | ".join(f"{m[a]:.2f}" for a in ("yaw", "pitch", "roll"))
    rows.append(f"| {name} | {angles} | **{m['mean']:.2f}** | {m['count']} |")
display(Markdown("MAE in degrees on the validation split\n\n" + "\n".join(rows)))

# %%
errors_png = fig_dir / "errors_vs_yaw.png"
evaluation.plot_errors(preds["int8"], val.poses, errors_png, title=f"{models['int8'].name}, validation split")
display(Image(filename=str(errors_png)))

# %% [markdown]
# The 12 validation faces with the largest mean error of the int8 model: labelled axes on the
# left, predicted axes on the right.

# %% tags=["dataset-faces"]
err = np.abs(preds["int8"] - val.poses).mean(axis=1)
worst = np.argsort(-err)[:12]
fig = Figure(figsize=(14, 6.6), layout="constrained")
for ax, i, crop in zip(fig.subplots(3, 4).flat, worst, val.subset(worst).crops(DISPLAY)):
    true_img, pred_img = crop.copy(), crop.copy()
    if draw is not None:
        draw.draw_axes(true_img, val.poses[i], (DISPLAY / 2, DISPLAY / 2), DISPLAY * 0.4)
        draw.draw_axes(pred_img, preds["int8"][i], (DISPLAY / 2, DISPLAY / 2), DISPLAY * 0.4)
    ax.imshow(np.hstack([true_img, pred_img])[:, :, ::-1])
    t, p = val.poses[i], preds["int8"][i]
    ax.set_title(
        f"{val.names[i]}: mean error {err[i]:.1f}\nyaw/pitch/roll true {t[0]:.0f}/{t[1]:.0f}/{t[2]:.0f}, "
        f"pred {p[0]:.0f}/{p[1]:.0f}/{p[2]:.0f}",
        fontsize=8,
    )
    ax.axis("off")
show(fig, "worst_faces")

# %% [markdown]
# ## 6. Benchmark: latency vs threads
#
# `bench.run_benchmark` times each model in a fresh worker process on the LiteRT interpreter:
# untimed warm-up calls, then timed batch-1 calls (p50/p90 in ms), for each thread count.
# Numbers depend on the machine and on what else runs on it.

# %%
if bench is None:
    print("skipped: the benchmark needs qa_headpose.bench")
else:
    cpus = os.cpu_count() or 1
    threads = tuple(sorted({t for t in (1, 2, 4, 8) if t <= cpus} | {cpus}))
    bench_cfg = bench.BenchmarkConfig(
        threads=threads,
        batch_sizes=(1,) if FAST else (1, 8, 32),
        warmup=3 if FAST else 10,
        runs=20 if FAST else 200,
        throughput_seconds=0.1 if FAST else 0.5,
        runtimes=("litert",),
        xnnpack=(True,),  # XNNPACK off: qa-headpose benchmark --xnnpack both
    )
    bench_report = bench.run_benchmark([bench.model_spec(p) for p in models.values()], bench_cfg)
    print(bench.format_table(bench_report))
    bench.write_report_json(bench_report, out_dir / "benchmark.json")
    latency_png = fig_dir / "latency_vs_threads.png"
    bench.plot_latency(bench_report, latency_png)
    display(Image(filename=str(latency_png)))

# %% [markdown]
# ## 7. Prediction on the sample image
#
# `HeadPoseEstimator.predict_image` finds the faces with the offline BlazeFace detector, cuts the
# training crop around each and runs the int8 model; `draw.draw_face` draws the box and the
# predicted axes. (In fast mode the model has trained for two epochs on 60 faces: expect a poor pose.)

# %%
if None in (draw, detect, registry):
    print("skipped: the prediction needs qa_headpose.inference (draw, detect, registry)")
else:
    from qa_headpose.inference.estimator import HeadPoseEstimator
    from qa_headpose.inference.images import read_image

    estimator = HeadPoseEstimator.from_tflite(models["int8"])
    image = read_image(registry.SAMPLE_IMAGE)
    found = estimator.predict_image(image)
    for face in found:
        print(f"face {face.face}: score {face.score:.2f}, box {tuple(round(v) for v in face.box)}, {face.pose}")
        draw.draw_face(image, face.box, face.pose, mode="axes")
    if not found:
        print(f"no face found in {registry.SAMPLE_IMAGE.name}")
    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image[:, :, ::-1])
    ax.set_title(f"{registry.SAMPLE_IMAGE.name}, {models['int8'].name}")
    ax.axis("off")
    show(fig, "sample_prediction")

# %% [markdown]
# ## The same steps on the command line
#
# ```bash
# qa-headpose train --preset default --out runs/default        # sections 1-3
# qa-headpose export runs/default --out runs/default/export    # section 4
# qa-headpose evaluate runs/default/export/headpose_int8.tflite --data ../shared/data/AFLW2000 \
#     --subset val --plot runs/default/errors.png                # section 5
# qa-headpose benchmark --model runs/default/export --plot runs/default/latency.png  # section 6
# qa-headpose predict --model runs/default/export/headpose_int8.tflite --output runs/default/pred  # section 7
# ```
#
# The full mode's model is `weights/teacher_v1/` (its int8 and float32 exports and float weights). The
# shipped models are its students: `qa-headpose train --preset accurate|fast`, then
# `python tools/ship_model.py RUN EXPORT_DIR --name accurate|fast --command "..."` copies an export into
# `qa_headpose/models/` with its model card.
