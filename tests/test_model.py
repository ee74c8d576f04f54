import numpy as np
import pytest

from qa_headpose.training.config import ModelConfig


def test_output_shape_and_layer_names(tiny_model_config, tiny_images):
    from qa_headpose.training._keras import keras
    from qa_headpose.training.model import build_model

    model = build_model(tiny_model_config)
    y = model.predict_on_batch(tiny_images[:2].astype(np.float32))
    assert y.shape == (2, 3) and np.all(np.isfinite(y))
    # Same layer names and weight shapes as keras.applications, so its ImageNet weights load by name.
    ref = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    for layer in ref.layers:
        if layer.weights:
            assert [w.shape for w in model.get_layer(layer.name).weights] == [w.shape for w in layer.weights]


def test_config_round_trip(tiny_model_config, tiny_images):
    from qa_headpose.training._keras import keras
    from qa_headpose.training.model import build_model

    model = build_model(tiny_model_config)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = tiny_images[:2].astype(np.float32)
    np.testing.assert_allclose(clone.predict_on_batch(x), model.predict_on_batch(x), atol=1e-5)


def test_input_norm_maps_bgr_pixels_to_normalised_rgb():
    from qa_headpose.training.model import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, input_norm_weights

    kernel, bias = input_norm_weights()
    bgr = np.array([10.0, 128.0, 250.0])
    rgb = bgr @ kernel[0, 0] + bias
    expected = (bgr[::-1] / 255 - np.array(IMAGENET_MEAN_RGB)) / np.array(IMAGENET_STD_RGB)
    np.testing.assert_allclose(rgb, expected, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"input_size": 16}, {"alpha": 0.0}, {"dropout": 1.0}])
def test_bad_config(kwargs):
    with pytest.raises(ValueError):
        ModelConfig(**kwargs)


def test_missing_backbone_file():
    from qa_headpose.training.model import build_model

    with pytest.raises(ValueError, match="backbone_weights"):
        build_model(ModelConfig(input_size=32, alpha=0.35, backbone_weights="/nonexistent.h5"))


def test_average_of_two_runs_weights_is_their_element_wise_mean(tiny_model_config):
    """tools/average_weights.py: the soup is the mean of every weight, BN statistics included."""
    import dataclasses
    import importlib.util
    from pathlib import Path

    from qa_headpose.training._keras import keras
    from qa_headpose.training.model import build_model

    spec = importlib.util.spec_from_file_location(
        "average_weights", Path(__file__).resolve().parents[1] / "tools" / "average_weights.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    keras.utils.set_random_seed(1)
    a = build_model(tiny_model_config).get_weights()
    keras.utils.set_random_seed(2)
    b = build_model(tiny_model_config).get_weights()
    b[-3] += 5.0  # a batch-norm statistic or the head differ too, not only random kernels
    soup = tool.mean_weights([a, b])
    assert len(soup) == len(a) and any(not np.allclose(x, y) for x, y in zip(a, b))
    for wa, wb, ws in zip(a, b, soup):
        np.testing.assert_allclose(ws, (wa + wb) / 2, rtol=1e-6)
    for wa, wb, ws in zip(a, b, tool.mean_weights([a, b], [0.25, 0.75])):
        np.testing.assert_allclose(ws, 0.25 * wa + 0.75 * wb, rtol=1e-5, atol=1e-6)
    for shares in ([0.5], [0.7, 0.7], [1.5, -0.5]):
        with pytest.raises(ValueError, match="summing to 1"):
            tool.mean_weights([a, b], shares)
    wider = build_model(dataclasses.replace(tiny_model_config, alpha=0.5)).get_weights()
    with pytest.raises(ValueError, match="differ in architecture"):
        tool.mean_weights([a, wider])
