"""The serve package's facts have one home: the face JSON and the OpenAPI document come from the same
definitions, saturation is the runtime's `HeadPose.saturated`, the CLI's defaults are `ServeConfig`'s,
every error code raised is documented, and the router serves exactly the documented routes.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest

from qa_headpose.cli import serve as serve_cli
from qa_headpose.core.angles import HeadPose
from qa_headpose.inference.detect import FaceResult
from qa_headpose.serve.config import DEFAULTS, ServeConfig
from qa_headpose.serve.errors import ERRORS

pytest.importorskip("starlette", reason="qa-headpose serve needs the serve extra: pip install -e .[serve]")
from qa_headpose.serve.schema import FACE_FIELDS, FACE_SCHEMA, ROUTES, face_to_json, openapi_document  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "qa_headpose"


def _face(yaw: float, saturated: bool) -> FaceResult:
    return FaceResult(box=(1.0, 2.0, 30.0, 40.0), score=0.9, pose=HeadPose(yaw, -5.0, 3.0, saturated), face=0)


@pytest.mark.parametrize("yaw, flag", [(50.0, True), (-99.2, False), (99.5, False), (0.0, False)])
def test_saturated_is_the_runtimes_flag(yaw, flag):
    """-99.2 or 99.5 degrees are not saturated unless the runtime said so (|angle| >= 99 was the old rule)."""
    answer = face_to_json(_face(yaw, flag))
    assert answer["saturated"] is flag and answer["yaw"] == yaw


def test_face_json_and_its_schema_have_the_same_fields():
    answer = face_to_json(_face(10.0, False))
    assert list(answer) == list(FACE_FIELDS) == list(FACE_SCHEMA["properties"]) == FACE_SCHEMA["required"]
    assert len(answer["axes"]) == 3 and all(len(row) == 3 for row in answer["axes"]) and len(answer["box"]) == 4


def test_every_error_code_raised_is_documented():
    raised = set()
    for path in (PACKAGE / "serve").glob("*.py"):
        raised |= set(re.findall(r'(?:ApiError|_fail|raw_error_response|_busy)\(\s*"(\w+)"', path.read_text()))
    raised |= set(re.findall(r'error_response\(\d+, "(\w+)"', (PACKAGE / "serve" / "routes.py").read_text()))
    assert raised and raised <= set(ERRORS), raised - set(ERRORS)


def test_the_router_serves_exactly_the_documented_routes():
    from starlette.routing import Route

    from qa_headpose.serve import routes

    built = [Route(p, routes.HANDLERS[p], methods=list(m)) for p, m in ROUTES.items()]
    assert set(routes.HANDLERS) == set(ROUTES) == set(openapi_document()["paths"])
    for route in built:
        documented = {m.upper() for m in ROUTES[route.path]}
        assert route.methods - {"HEAD"} == documented
        for method, operation in openapi_document()["paths"][route.path].items():
            assert {"200", "404", "405", "500"} <= set(operation["responses"]), (route.path, method)
    poses = openapi_document()["paths"]["/v1/poses"]["post"]
    assert poses["requestBody"]["required"] is True
    assert set(poses["requestBody"]["content"]) == {"image/jpeg", "image/png", "image/webp", "multipart/form-data"}
    assert poses["requestBody"]["content"]["multipart/form-data"]["schema"]["required"] == ["image"]


def test_cli_defaults_are_serve_configs():
    p = argparse.ArgumentParser()
    serve_cli.add_arguments(p)
    assert serve_cli.make_config(p.parse_args([])) == DEFAULTS == ServeConfig()
    fields = {f.name for f in dataclasses.fields(ServeConfig)}
    assert {field for field, *_ in serve_cli.LIMITS.values()} <= fields
    tree = ast.parse((PACKAGE / "cli" / "serve.py").read_text())
    literals = [
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        for kw in node.keywords
        if kw.arg == "default" and isinstance(kw.value, ast.Constant) and kw.value.value is not None
    ]
    assert literals == [], f"cli/serve.py repeats defaults: {literals}"


def test_cli_flags_reach_the_config():
    p = argparse.ArgumentParser()
    serve_cli.add_arguments(p)
    argv = ["--max-body-mb", "2", "--max-uploads", "3", "--header-timeout", "1.5", "--max-buffered-mb", "1"]
    cfg = serve_cli.make_config(p.parse_args(argv))
    assert cfg.max_body_bytes == 2 * 2**20 and cfg.max_uploads == 3 and cfg.header_timeout_s == 1.5
    assert cfg.max_buffered_bytes == cfg.max_body_bytes  # raised to hold one largest body


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"max_uploads": 0}, "max_uploads must be >= 1"),
        ({"header_timeout_s": 0}, "header_timeout_s must be > 0"),
        ({"max_buffered_bytes": 10}, "max_buffered_bytes must be >= max_body_bytes"),
        ({"port": 70000}, "port must be in 0..65535"),
    ],
)
def test_config_refuses_bad_limits(changes, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        ServeConfig(**changes)


def test_docs_error_table_is_errors():
    """docs/serve.md's table of error codes is `ERRORS`, row for row."""
    text = (PACKAGE.parent / "docs" / "serve.md").read_text()
    rows = re.findall(r"^\| (\d{3}) \| `(\w+)` \| (.+?) \|$", text, re.MULTILINE)
    assert {code: (int(status), meaning) for status, code, meaning in rows} == ERRORS


def test_docs_example_is_a_real_response():
    """docs/serve.md's JSON example is what the server answers for the sample (timings aside)."""
    import json

    from qa_headpose import HeadPoseEstimator
    from qa_headpose.core.atomic import sha256_bytes
    from qa_headpose.inference.images import read_image
    from qa_headpose.inference.registry import SAMPLE_IMAGE

    text = (PACKAGE.parent / "docs" / "serve.md").read_text()
    example = json.loads(re.search(r"```json\n(.*?)```", text, re.DOTALL).group(1))
    estimator = HeadPoseEstimator(num_threads=1)  # as the server's workers
    assert example["faces"] == [face_to_json(f) for f in estimator.predict_image(read_image(SAMPLE_IMAGE))]
    assert example["image"] == {"width": 512, "height": 512, "format": "jpeg"}
    sha = sha256_bytes(Path(estimator.model_path).read_bytes())[:12]
    assert example["model"] == {"name": "accurate", "input_size": estimator.input_size, "sha256": sha}
    assert list(example["timings_ms"]) == ["read", "queue", "decode", "inference", "total"]


# ---------------------------------------------------------------- found by mutation testing
def test_face_json_puts_each_number_in_its_field():
    """Every number differs (yaw, pitch, roll, the box corners, score, index), so a swap or a lost sign shows."""
    import json

    face = FaceResult(box=(1.5, 2.5, 30.25, 40.75), score=0.875, pose=HeadPose(20.0, -35.0, 12.5, False), face=2)
    answer = face_to_json(face)
    axes = answer.pop("axes")
    assert answer == {
        "face": 2,
        "box": [1.5, 2.5, 30.25, 40.75],
        "score": 0.875,
        "yaw": 20.0,
        "pitch": -35.0,
        "roll": 12.5,
        "saturated": False,
    }
    assert type(answer["face"]) is int and all(type(answer[k]) is float for k in ("score", "yaw", "pitch", "roll"))
    assert json.loads(json.dumps(axes)) == axes and np.allclose(np.asarray(axes) @ np.asarray(axes).T, np.eye(3))


@pytest.mark.parametrize(
    "pose, row, expected",
    [
        # angles.py: yaw > 0 turns the face to the image left (the nose, axis z, points to -x); pitch > 0 looks up
        # (+y, y up); roll > 0 tilts the head clockwise on screen (its x axis points down, -y).
        ((30.0, 0.0, 0.0), 2, (-0.5, 0.0, math.sqrt(3) / 2)),
        ((0.0, 30.0, 0.0), 2, (0.0, 0.5, math.sqrt(3) / 2)),
        ((0.0, 0.0, 30.0), 0, (math.sqrt(3) / 2, -0.5, 0.0)),
        ((0.0, 0.0, 0.0), 1, (0.0, 1.0, 0.0)),
    ],
)
def test_face_json_axes_follow_the_documented_signs(pose, row, expected):
    axes = face_to_json(FaceResult(box=(0, 0, 1, 1), score=1.0, pose=HeadPose(*pose), face=0))["axes"]
    np.testing.assert_allclose(axes[row], expected, atol=1e-12)


def test_worker_answer_has_the_image_size_and_the_faces(tmp_path):
    import time

    import cv2

    from qa_headpose import HeadPoseEstimator
    from qa_headpose.inference.images import read_image
    from qa_headpose.inference.registry import SAMPLE_IMAGE
    from qa_headpose.serve.pool import predict_payload

    estimator = HeadPoseEstimator(num_threads=1)
    payload = SAMPLE_IMAGE.read_bytes()
    start = time.perf_counter()
    answer = predict_payload(estimator, payload, 2**20, start - 1000.0)  # submitted 1000 s before the call
    window_ms = (time.perf_counter() - start) * 1e3
    assert answer["faces"] == [face_to_json(f) for f in estimator.predict_image(read_image(SAMPLE_IMAGE))]
    assert len(answer["faces"]) == 1
    # The three timings are the call's own parts, in milliseconds: the queue wait is the 1000 s given.
    assert 1e6 <= answer["queue_ms"] <= 1e6 + window_ms
    assert 0.05 < answer["decode_ms"] and 0.05 < answer["inference_ms"]  # a 512 px JPEG, a model run: not 0
    assert answer["decode_ms"] + answer["inference_ms"] <= window_ms
    wide = cv2.imencode(".png", np.zeros((40, 70, 3), np.uint8))[1].tobytes()
    answer = predict_payload(estimator, wide, 2**20, time.perf_counter())
    assert answer["faces"] == [] and answer["image"] == {"width": 70, "height": 40}
    too_large = predict_payload(estimator, wide, 70 * 40 - 1, time.perf_counter())["error"]
    assert (too_large.code, too_large.message) == (
        "image_too_large",
        "Image too large: the request body is 70x40 pixels (at most 2799 pixels are decoded)",
    )
    bad = predict_payload(estimator, b"not an image", 2**20, time.perf_counter())["error"]
    assert (bad.code, bad.message) == ("bad_image", "Cannot decode image: the request body")
