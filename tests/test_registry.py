"""The registry: get, list with patterns and filters, info, overrides, errors, user models."""

from __future__ import annotations

import keras
import pytest

import modelzoo
from modelzoo import registry


def test_get_returns_functional_model_with_defaults():
    model = modelzoo.get("lhc_cnn")
    assert isinstance(model, keras.Model)
    assert isinstance(model, keras.Model) and model.__class__.__name__ == "Functional"
    assert model.input_shape == (None, 64, 64, 3)


def test_config_overrides_defaults():
    model = modelzoo.get("lhc_cnn", input_shape=(32, 32, 3), dense_units=16, num_classes=3)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 3)
    assert model.get_layer("fc").units == 16


def test_unknown_config_key_lists_accepted_keys():
    with pytest.raises(modelzoo.ConfigError) as err:
        modelzoo.get("lhc_cnn", dropot=0.1)
    message = str(err.value)
    assert "dropot" in message and "dropout (default 0.5)" in message


def test_unknown_name_suggests_closest():
    with pytest.raises(modelzoo.ModelNotFoundError) as err:
        modelzoo.get("lhc_cn")
    assert "Did you mean 'lhc_cnn'" in str(err.value)


def test_list_models_patterns_and_filters():
    assert modelzoo.list_models("lhc*") == ["lhc_cnn", "lhc_cnn_15pf"]
    assert modelzoo.list_models("lhc*", exclude="*15pf") == ["lhc_cnn"]
    assert modelzoo.list_models(["nothing*", "lhc_cnn"]) == ["lhc_cnn"]
    assert "lhc_cnn" in modelzoo.list_models(domain="particle*")
    assert "lhc_cnn" not in modelzoo.list_models(domain="astro*")
    assert "lhc_cnn" in modelzoo.list_models(problem="CLASSIFICATION")
    assert modelzoo.list_models("zzz*") == []


def test_info_describes_model():
    info = modelzoo.info("lhc_cnn")
    assert info["domain"] == "particle physics"
    assert info["defaults"]["input_shape"] == (64, 64, 3)
    assert "arXiv:1711.03573" in info["citation"]
    assert "all_events" in info["data_layout"]
    assert info["summary"].startswith("The ACAT 2017 CNN")
    assert info["case"] == "lhc" and info["recipe"].endswith("lhc/recipes/lhc_cnn.yaml")


def test_user_registered_model_behaves_like_builtin():
    @modelzoo.register_model(domain="test science", problem="regression", inputs="(4,)")
    def tiny_user_model(units: int = 3) -> keras.Model:
        """A user's own model."""
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(units)(inputs))

    try:
        assert modelzoo.get("tiny_user_model", units=5).output_shape == (None, 5)
        assert modelzoo.list_models(domain="test*") == ["tiny_user_model"]
        assert modelzoo.info("tiny_user_model")["summary"] == "A user's own model."
        with pytest.raises(ValueError, match="already registered"):
            modelzoo.register_model(name="tiny_user_model")(tiny_user_model)
    finally:
        registry._REGISTRY.pop("tiny_user_model")


def test_builder_must_name_its_parameters():
    with pytest.raises(TypeError, match=r"\*\*kwargs"):
        @modelzoo.register_model
        def loose(**kwargs) -> keras.Model:  # pragma: no cover - never built
            raise AssertionError


def test_cli_list_and_info(capsys):
    from modelzoo.cli import main

    assert main(["list", "lhc*"]) == 0
    out = capsys.readouterr().out
    assert "lhc_cnn" in out and "lhc_cnn_15pf" in out
    assert main(["info", "lhc_cnn"]) == 0
    assert "particle physics" in capsys.readouterr().out
    assert main(["info", "lhc_cn"]) == 2
    assert "Did you mean" in capsys.readouterr().err
