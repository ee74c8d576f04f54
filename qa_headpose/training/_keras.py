"""The only module that imports Keras: Keras 2 (`tf_keras`), which tfmot requires.

Importing this module imports TensorFlow (seconds, hundreds of MB), so the
inference path (`runtime`, `estimator`, `detect`) never imports it.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf"]
