"""The only module that imports Keras: Keras 2 (`tf_keras`), which tfmot requires.

Importing this module imports TensorFlow (seconds, hundreds of MB), so the
inference path (`runtime`, `estimator`, `detect`) never imports it.

TensorFlow's start-up block (``All log messages before absl::InitializeLog()``, ``Could
not find cuda drivers``, and on a CPU-only machine ``failed call to cuInit ... CUDA
error``) is written by C++ straight to stderr, twice over; it is filtered out here
(`core.native_stderr`), and absl's Python logger is set to errors, unless
``QA_HEADPOSE_VERBOSE`` is set (``qa-headpose COMMAND --verbose`` sets it). Other native
lines pass through.
"""

from __future__ import annotations

import os

from qa_headpose.core.native_stderr import VERBOSE_ENV, quiet

_verbose = bool(os.environ.get(VERBOSE_ENV))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _verbose else "2")

with quiet():
    import tensorflow as tf
    import tf_keras as keras

    tf.config.list_physical_devices("GPU")  # where a CPU-only machine prints the cuInit error
if not _verbose:
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)  # the converter's WARNING:absl lines

__all__ = ["keras", "tf"]
