"""Quantization-aware training wrappers: every use of tfmot lives here.

tfmot starts each activation range near +-6 and widens it slowly, which would
clip a head that speaks in degrees. The pose output therefore gets a fixed range
of [-100, 99.22] degrees (int8 step 0.78 degrees, zero exactly representable),
wide enough for the protocol's +-99 degree labels.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

# _keras first: it sets the Keras version and quiets TensorFlow's start-up before tfmot imports TF.
from qa_headpose.training._keras import keras

# isort: split
import tensorflow_model_optimization as tfmot

from qa_headpose.training.config import ModelConfig
from qa_headpose.training.model import BIN_SOFTMAX_NAME, OUTPUT_NAME, build_model

OUTPUT_SCALE_DEG = 100.0 / 128.0
OUTPUT_MIN_DEG = -128 * OUTPUT_SCALE_DEG
OUTPUT_MAX_DEG = 127 * OUTPUT_SCALE_DEG

_quantizers = tfmot.quantization.keras.quantizers


class PoseOutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Default 8-bit weights for the pose Dense, and a fixed degree range for its output."""

    def get_weights_and_quantizers(self, layer):
        quantizer = _quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True, narrow_range=True)
        return [(layer.kernel, quantizer)]

    def get_activations_and_quantizers(self, layer):
        quantizer = _quantizers.FixedQuantizer(
            num_bits=8, init_min=OUTPUT_MIN_DEG, init_max=OUTPUT_MAX_DEG, narrow_range=False
        )
        return [(layer.activation, quantizer)]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class BinSoftmaxQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """The bin probabilities on the int8 softmax's own grid (steps of 1/256 from 0).

    tfmot leaves a softmax's output unquantized, so QAT would never see the rounding of small probabilities
    that the int8 model applies before the expectation.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        # TFLite's int8 softmax: scale 1/256, zero point -128; any other grid adds a requantize op.
        return [_quantizers.FixedQuantizer(num_bits=8, init_min=0.0, init_max=255 / 256, narrow_range=False)]

    def get_config(self):
        return {}


@contextlib.contextmanager
def quantize_scope() -> Iterator[None]:
    """Scope in which QAT models can be built, cloned and deserialised."""
    configs = {
        "PoseOutputQuantizeConfig": PoseOutputQuantizeConfig,
        "BinSoftmaxQuantizeConfig": BinSoftmaxQuantizeConfig,
    }
    with tfmot.quantization.keras.quantize_scope(configs):
        yield


def make_qat_model(model: keras.Model) -> keras.Model:
    """Wraps a float model for quantization-aware training; the float weights carry over.

    Args:
        model: a float model from `build_model`.

    Returns:
        A new model with fake-quant nodes (same input/output shapes). Its trainable
        weights start as copies of ``model``'s.
    """
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def _annotate(layer):
        if layer.name == OUTPUT_NAME:
            return annotate(layer, quantize_config=PoseOutputQuantizeConfig())
        if layer.name == BIN_SOFTMAX_NAME:
            return annotate(layer, quantize_config=BinSoftmaxQuantizeConfig())
        return annotate(layer)

    annotated = keras.models.clone_model(model, clone_function=_annotate)
    with quantize_scope():
        return tfmot.quantization.keras.quantize_apply(annotated)


def build_qat_model(cfg: ModelConfig, weights_path: str | None = None) -> keras.Model:
    """Rebuilds a QAT model from its config (and loads ``save_weights`` output if given).

    Rebuilding and loading weights is the reliable way to reload a QAT model.
    """
    float_cfg = ModelConfig(**{**cfg.__dict__, "backbone_weights": None})
    qat = make_qat_model(build_model(float_cfg))
    if weights_path is not None:
        qat.load_weights(weights_path)
    return qat


def count_fake_quant_layers(model: keras.Model) -> int:
    """Number of tfmot wrapper/quantize layers in a model (0 for a float model)."""
    kinds = ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
    return sum(type(layer).__name__ in kinds for layer in model.layers)
