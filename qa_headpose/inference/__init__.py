"""TF-free inference: numpy, OpenCV and LiteRT only (tests/test_layout.py checks it).

Read in this order, image -> box -> crop -> input -> runner -> HeadPose:
`images` (decode to uint8 BGR) -> `detect` (face boxes; `blazeface` decodes the detector's
output) -> `preprocess` (the crop and the model input, float32 (n, S, S, 3) pixels in
[0, 255]) -> `runtime` (`TFLiteRunner`, degrees out; `interpreter` loads and pools LiteRT
interpreters) -> `estimator` (`HeadPoseEstimator`, returning `core.angles.HeadPose`, and per
face `results.FaceResult`). Around them: `registry` (shipped models by name, the models
folder), `video` (frames, tracking, smoothing), `draw`, `sources`/`outputs` (inputs and output
paths of a batch run). The ``predict``
command's orchestration (config, run, worker processes, formats) is ``qa_headpose.predict``.
"""
