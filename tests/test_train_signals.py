"""Built-in models for signals: standardisation inside the model, cnn1d, a user's own model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import ModelError


@pytest.fixture(scope="module")
def models():
    from train import models

    return models


def test_standardisation_uses_training_statistics_per_channel(models) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16, 3)) * [1.0, 50.0, 0.01] + [5.0, -300.0, 2.0]
    x[:, :, 2] = 7.0  # a constant channel: kept at 0, not divided by a zero deviation
    model = models.build_model("cnn1d", (16, 3), 4, standardise=x.astype(np.float32))
    layer = model.get_layer("standardise")
    import keras

    out = np.asarray(keras.Model(model.inputs, layer.output)(x.astype(np.float32)))
    flat = out.reshape(-1, 3)
    np.testing.assert_allclose(flat[:, :2].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(flat[:, :2].std(axis=0), 1.0, atol=1e-3)
    np.testing.assert_allclose(flat[:, 2], 0.0, atol=1e-6)


def test_dnn_takes_any_shape_and_cnn1d_sequences_only(models) -> None:
    for shape in ((6,), (32, 3), (30, 1, 40)):
        model = models.build_model("dnn", shape, 3)
        assert tuple(model.input_shape[1:]) == shape and tuple(model.output_shape[1:]) == (3,)
    assert tuple(models.build_model("cnn1d", (50,), 2).output_shape[1:]) == (2,)
    with pytest.raises(ModelError, match="cnn1d takes sequences"):
        models.build_model("cnn1d", (8, 8, 1), 2)
    with pytest.raises(ModelError, match="cnn takes images"):
        models.build_model("cnn", (64, 3), 2)


def test_own_model_is_checked_against_the_data(models, tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((10,))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs)).save(tmp_path / "m.keras")
    assert models.load_user_model(tmp_path / "m.keras", (10,), 3).count_params() == 33
    with pytest.raises(ModelError, match=r"takes samples of shape \(10,\), the dataset has \(12,\)"):
        models.load_user_model(tmp_path / "m.keras", (12,), 3)
    with pytest.raises(ModelError, match=r"outputs shape \(3,\); training on 4 classes"):
        models.load_user_model(tmp_path / "m.keras", (10,), 4)
    with pytest.raises(ModelError, match="not found"):
        models.load_user_model(tmp_path / "absent.keras", (10,), 3)
