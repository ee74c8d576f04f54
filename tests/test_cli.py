"""The qa-headpose train/export/evaluate commands end to end on real AFLW2000 files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qa_headpose import cli
from qa_headpose.cli import main
from qa_headpose.core import angles


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, aflw_small):
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["train", "--preset", "tiny", "--data", str(aflw_small), "--split", "hash", "--out", str(out)]
    assert main([*argv, "--epochs", "2", "--qat-epochs", "1", "--batch-size", "8", "--quiet"]) == 0
    return out


def test_train_writes_run_folder(cli_run):
    config = json.loads((cli_run / "config.json").read_text())
    assert config["model"]["input_size"] == 32 and config["train"]["epochs"] == 2
    assert config["data"]["train_faces"] + config["data"]["val_faces"] <= 24
    summary = json.loads((cli_run / "summary.json").read_text())
    assert summary["float"]["val"]["count"] == config["data"]["val_faces"]
    for phase in ("float", "qat"):
        assert (cli_run / phase / "best.weights.h5").stat().st_size > 0
        rows = (cli_run / phase / "log.csv").read_text().strip().splitlines()
        assert rows[0].startswith("epoch") and "val_yaw_mae" in rows[0]
    assert len((cli_run / "float" / "log.csv").read_text().strip().splitlines()) == 3


def test_train_refuses_existing_run_without_resume(cli_run, aflw_small, capsys):
    code = main(["train", "--preset", "tiny", "--data", str(aflw_small), "--out", str(cli_run)])
    assert code == 2 and "--resume" in capsys.readouterr().err


def test_resume_of_finished_run_trains_nothing_more(cli_run, aflw_small):
    before = (cli_run / "float" / "log.csv").read_text()
    argv = ["train", "--preset", "tiny", "--data", str(aflw_small), "--split", "hash", "--out", str(cli_run)]
    assert main([*argv, "--epochs", "2", "--qat-epochs", "1", "--batch-size", "8", "--quiet", "--resume"]) == 0
    assert (cli_run / "float" / "log.csv").read_text() == before


def test_zero_float_epochs_quantizes_the_start_weights(cli_run, aflw_small, tmp_path, capsys):
    out = tmp_path / "qat_only"
    argv = ["train", "--preset", "tiny", "--data", str(aflw_small), "--split", "hash", "--out", str(out)]
    start = cli_run / "float" / "best.weights.h5"
    assert main([*argv, "--epochs", "0", "--init-weights", str(start), "--batch-size", "8", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["float"]["epochs_run"] == 0 and not (out / "float" / "log.csv").exists()
    # The float phase's weights are the start weights: the same val MAE as the run they came from.
    earlier = json.loads((cli_run / "summary.json").read_text())["float"]["val"]
    assert summary["float"]["val"]["mean"] == pytest.approx(earlier["mean"], abs=1e-4)
    assert len((out / "qat" / "log.csv").read_text().strip().splitlines()) == 2  # header + the QAT epoch
    # A second QAT-only run into the same folder is refused before it replaces anything.
    before = (out / "float" / "best.weights.h5").read_bytes()
    assert main([*argv, "--epochs", "0", "--init-weights", str(start), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "float" / "best.weights.h5").read_bytes() == before
    # Without start weights there is nothing to quantize: one line, exit 2, no run folder.
    assert main([*argv[:-1], str(tmp_path / "none"), "--epochs", "0", "--quiet"]) == 2
    assert "needs init weights" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_export_and_evaluate(cli_run, aflw_small, tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["export", str(cli_run), "--out", str(models), "--variants", "int8,float32"]) == 0
    printed = capsys.readouterr().out
    assert "fully int8: True" in printed
    int8 = models / "headpose_int8.tflite"
    assert int8.stat().st_size > 0 and (models / "headpose_float32.json").is_file()
    # A second export into the same files is refused without --force.
    assert main(["export", str(cli_run), "--out", str(models), "--variants", "float32"]) == 2
    assert main(["export", str(cli_run), "--out", str(models), "--variants", "float32", "--force"]) == 0

    report, plot = tmp_path / "eval.json", tmp_path / "eval.png"
    assert main(["evaluate", str(int8), "--data", str(aflw_small), "--json", str(report), "--plot", str(plot)]) == 0
    metrics = json.loads(report.read_text())
    from qa_headpose import evaluation
    from qa_headpose.datasets import load

    faces, counts = load.load_filtered([aflw_small])
    expected, _ = evaluation.evaluate_model(int8, faces)
    assert metrics["count"] == expected["count"] == len(faces)
    assert metrics["dropped"] == counts["dropped"]
    for key in ("yaw", "pitch", "roll", "mean"):
        assert metrics[key] == pytest.approx(expected[key])
    assert f"mean {expected['mean']:.2f}" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The Keras QAT model of the run folder scores the same faces.
    assert main(["evaluate", str(cli_run), "--phase", "qat", "--data", str(aflw_small)]) == 0
    # Progress bars on stderr with --progress (stderr is no terminal here), none with --quiet.
    capsys.readouterr()
    assert main(["evaluate", str(int8), "--data", str(aflw_small), "--progress"]) == 0
    out, err = capsys.readouterr()
    assert "reading: 100%" in err and "predicting: 100%" in err and f"/{len(faces)} " in err
    assert f"mean {expected['mean']:.2f}" in out and "%|" not in out
    assert main(["evaluate", str(int8), "--data", str(aflw_small), "--quiet"]) == 0
    assert "%|" not in capsys.readouterr().err
    # --mirror: each face averaged with its mirror image, both in one pass over the faces.
    mirrored = tmp_path / "mirror.json"
    assert (
        main(["evaluate", str(int8), "--data", str(aflw_small), "--mirror", "--json", str(mirrored), "--progress"]) == 0
    )
    out, err = capsys.readouterr()
    x = faces.crops(evaluation.model_input_size(int8)).astype(np.float32)
    both = angles.average_with_mirror(evaluation.predict_model(int8, x), evaluation.predict_model(int8, x[:, :, ::-1]))
    assert json.loads(mirrored.read_text())["mean"] == pytest.approx(
        angles.mean_absolute_errors(both, faces.poses)["mean"]
    )
    assert json.loads(mirrored.read_text())["mirror"] is True and "+ mirror" in out and f"/{len(faces)} " in err


def test_data_crop_writes_fsanet_npz(aflw_small, tmp_path, capsys):
    out = tmp_path / "aflw.npz"
    assert main(["data", "crop", str(aflw_small), "--out", str(out), "--size", "48"]) == 0
    with np.load(out) as npz:
        assert npz["image"].shape[1:] == (48, 48, 3) and len(npz["pose"]) == len(npz["image"]) > 0
    assert "%|" not in capsys.readouterr().err  # no bar when stderr is no terminal
    assert main(["data", "crop", str(aflw_small), "--out", str(out), "--force", "--progress"]) == 0
    assert f"reading {aflw_small.name}: 100%" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["nonsense"], "invalid choice"),
        (["evaluate", "x.tflite", "--data", "d", "--threads", "0"], "positive integer"),
        (["evaluate", "x.tflite", "--data", "d", "--threads", "-1"], "positive integer"),
        (["train", "--out", "/tmp/x", "--batch-size", "abc"], "positive integer"),
        (["evaluate", "/nonexistent/model.tflite", "--data", "/nonexistent/data"], "No such file or folder"),
        (["data", "crop", "/nonexistent", "--out", "x.txt"], "must end in .npz"),
    ],
)
def test_bad_command_lines_exit_2_with_one_message(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_console_script_and_shim_run_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "qa_headpose.cli", "evaluate", str(tmp_path / "m.tflite"), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error:" in result.stderr


def test_torchvision_weights_pick_width_one_unless_alpha_is_given():
    from qa_headpose import cli
    from qa_headpose.cli.train import train_configs

    def model_of(*flags):
        args = cli.build_parser().parse_args(["train", "--preset", "tiny", "--out", "unused", *flags])
        return train_configs(args)[0]

    assert model_of().alpha == 0.35
    # torchvision ships ImageNet weights for width 1.0 only: the tiny preset with them trains at 1.0.
    assert model_of("--backbone-weights", "torchvision").alpha == 1.0
    assert model_of("--backbone-weights", "torchvision", "--alpha", "0.5").alpha == 0.5


def test_evaluate_takes_a_shipped_model_by_name_as_predict_does(tmp_path, monkeypatch):
    from qa_headpose.inference.registry import shipped_model_path

    parser = cli.build_parser()
    assert parser.parse_args(["evaluate", "fast", "--data", "d"]).model == shipped_model_path("fast")
    assert parser.parse_args(["evaluate", "accurate", "--data", "d"]).model == shipped_model_path("accurate")
    monkeypatch.chdir(tmp_path)  # any other text is a path, relative to where the command runs
    assert parser.parse_args(["evaluate", "runs/x", "--data", "d"]).model == Path("runs/x")
