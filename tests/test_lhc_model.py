"""lhc_cnn variants against the published layer tables (research notes, section 6)."""

from __future__ import annotations

import numpy as np

import modelzoo


def test_acat_cnn_matches_published_parameter_count():
    # ACAT 2017 Lasagne run111: one-channel 64x64 input, 4,493,442 parameters.
    model = modelzoo.get("lhc_cnn", input_shape=(64, 64, 1))
    assert model.count_params() == 4_493_442


def test_acat_cnn_three_channel_layers():
    model = modelzoo.get("lhc_cnn")
    convs = [layer for layer in model.layers if layer.name.startswith("conv")]
    assert [c.filters for c in convs] == [128, 128, 128]
    assert all(c.kernel_size == (3, 3) and not c.use_bias for c in convs)
    assert model.get_layer("pool3").output.shape[1:] == (8, 8, 128)
    assert model.get_layer("fc").units == 512
    # 4,493,442 + 2 x (3 x 3 x 128) extra first-layer weights for channels 2 and 3.
    assert model.count_params() == 4_495_746


def test_15pf_cnn_layers_and_output():
    model = modelzoo.get("lhc_cnn_15pf")
    assert model.input_shape == (None, 224, 224, 3)
    assert model.get_layer("pool4").output.shape[1:] == (14, 14, 128)
    # 4 x conv(3x3x128) + final conv + dense 2: 3,584 + 3 x 147,584 + 147,584 + 258.
    assert model.count_params() == 594_178
    assert modelzoo.get("lhc_cnn_15pf", input_shape=(227, 227, 3)).count_params() == 594_178


def test_mixed_bfloat16_keeps_the_probabilities_float32():
    import pytest

    from modelzoo.errors import ConfigError
    from modelzoo.training import dtype_policy, precision_policy

    with dtype_policy(precision_policy({"train": {"precision": "mixed_bfloat16"}})):
        model = modelzoo.get("lhc_cnn", input_shape=(16, 16, 3), filters=8, dense_units=8)
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    x = np.zeros((2, 16, 16, 3), np.float32)
    x[0, 3, 4] = 1.0
    probs = model(x)
    assert probs.dtype == "float32"
    # 1 - p below bfloat16's resolution near 1 (2^-8) is still resolved.
    assert model.get_layer("class_probabilities").compute_dtype == "float32"
    assert np.isclose(float(np.sum(probs[0])), 1.0, rtol=1e-6)
    with pytest.raises(ConfigError, match="train.precision"):
        precision_policy({"train": {"precision": "bf16"}})


def test_inference_batches_shrink_with_the_image_size():
    """256 images of 64 x 64 a batch, as many pixels for larger images: the 224 x 224 model's
    evaluation at 256 a batch needed over 15 GB."""
    from modelzoo.lhc.task import inference_batch

    assert inference_batch((64, 64)) == 256
    assert inference_batch((32, 32)) == 256
    assert inference_batch((224, 224)) == 20
    assert inference_batch((4096, 4096)) == 1
