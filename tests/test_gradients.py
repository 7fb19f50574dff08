"""layer_grad_norms on real MLX gradient trees."""

from __future__ import annotations

import math
from collections import defaultdict

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from mlx_otel.numbers.gradients import OTHER_LAYERS, GradientNorms, layer_grad_norms, layer_name


class SmallTransformerBlock(nn.Module):
    """Nested modules: attention projections, a list of MLP layers, a norm."""

    def __init__(self, dims: int = 32) -> None:
        super().__init__()
        self.attention = nn.MultiHeadAttention(dims, num_heads=4, bias=True)
        self.norm = nn.LayerNorm(dims)
        self.mlp = [nn.Linear(dims, 4 * dims), nn.Linear(4 * dims, dims)]
        self.head = nn.Linear(dims, 3)
        # A weight beyond the stacking size takes the one-leaf path.
        self.wide = nn.Linear(dims, 300 * 300 // dims, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        h = self.norm(x + self.attention(x, x, x))
        h = h + self.mlp[1](nn.gelu(self.mlp[0](h)))
        return self.head(h).mean(axis=1) + 1e-3 * self.wide(h).mean()


def model_gradients() -> dict:
    mx.random.seed(0)
    model = SmallTransformerBlock()
    x = mx.random.normal((4, 6, 32))
    target = mx.random.normal((4, 3))

    def loss_fn(m: SmallTransformerBlock) -> mx.array:
        return mx.mean((m(x) - target) ** 2)

    _, grads = nn.value_and_grad(model, loss_fn)(model)
    mx.eval(grads)
    return grads


def numpy_layer_norms(grads: object) -> tuple[dict[str, float], float]:
    squares: dict[str, float] = defaultdict(float)
    for path, array in tree_flatten(grads):
        values = np.array(array.astype(mx.float32), dtype=np.float64)
        squares[layer_name(path)] += float(np.sum(values * values))
    total = sum(squares.values())
    return {k: math.sqrt(v) for k, v in squares.items()}, math.sqrt(total)


def test_layer_name_strips_the_parameter_leaf() -> None:
    assert layer_name("layers.0.attention.query_proj.weight") == "layers.0.attention.query_proj"
    assert layer_name("bias") == "bias"


def test_real_model_gradients_match_numpy_per_layer_and_globally() -> None:
    grads = model_gradients()
    norms = layer_grad_norms(grads)
    expected, expected_global = numpy_layer_norms(grads)
    assert isinstance(norms, GradientNorms)
    assert not norms.grouped
    assert set(norms.per_layer) == set(expected)
    assert {
        "attention.query_proj",
        "attention.out_proj",
        "norm",
        "mlp.0",
        "mlp.1",
        "head",
        "wide",
    } <= set(norms.per_layer)
    for layer, value in expected.items():
        assert norms.per_layer[layer] == pytest.approx(value, rel=1e-5), layer
    assert norms.global_norm == pytest.approx(expected_global, rel=1e-5)
    assert norms.layer_count == len(expected)
    assert all(v > 0 for v in norms.per_layer.values())


def test_weight_and_bias_of_a_module_make_one_norm() -> None:
    grads = {"fc": {"weight": mx.full((2, 2), 1.0), "bias": mx.full((2,), 2.0)}}
    norms = layer_grad_norms(grads)
    assert norms.per_layer == {"fc": pytest.approx(math.sqrt(4 * 1 + 2 * 4))}


def test_many_layers_are_grouped_within_max_series_with_the_same_global_norm() -> None:
    mx.random.seed(1)
    grads = {
        "layers": [
            {"weight": mx.random.normal((8, 8)), "bias": mx.random.normal((8,))} for _ in range(200)
        ]
    }
    full = layer_grad_norms(grads, max_series=1000)
    grouped = layer_grad_norms(grads, max_series=64)
    assert len(full.per_layer) == 200 and not full.grouped
    assert grouped.grouped
    assert len(grouped.per_layer) <= 64
    assert grouped.layer_count == 200
    assert grouped.global_norm == pytest.approx(full.global_norm, rel=1e-9)
    _, expected_global = numpy_layer_norms(grads)
    assert grouped.global_norm == pytest.approx(expected_global, rel=1e-5)
    # Groups are ranges of consecutive layers, so depth stays visible.
    assert "layers.0-3" in grouped.per_layer
    expected_first = math.sqrt(sum(full.per_layer[f"layers.{i}"] ** 2 for i in range(4)))
    assert grouped.per_layer["layers.0-3"] == pytest.approx(expected_first, rel=1e-9)
    total = sum(v * v for v in grouped.per_layer.values())
    assert math.sqrt(total) == pytest.approx(grouped.global_norm, rel=1e-9)


def test_deep_module_paths_are_shortened_to_the_block() -> None:
    def block() -> dict:
        return {
            name: {"weight": mx.ones((4, 4))}
            for name in ("q_proj", "k_proj", "v_proj", "o_proj", "up", "down")
        }

    grads = {
        "model": {
            "embed": {"weight": mx.ones((10, 4))},
            "layers": [{"self_attn": block(), "mlp": block()} for _ in range(8)],
        }
    }
    norms = layer_grad_norms(grads, max_series=16)
    assert norms.grouped
    assert norms.layer_count == 1 + 8 * 12
    assert set(norms.per_layer) == {"model.embed"} | {f"model.layers.{i}" for i in range(8)}
    assert norms.per_layer["model.layers.3"] == pytest.approx(math.sqrt(12 * 16))


def test_too_many_top_level_names_fold_into_other() -> None:
    grads = {f"w{i}": mx.ones((2,)) for i in range(10)}
    norms = layer_grad_norms(grads, max_series=4)
    assert len(norms.per_layer) == 4
    assert norms.per_layer[OTHER_LAYERS] == pytest.approx(math.sqrt(7 * 2))
    assert norms.global_norm == pytest.approx(math.sqrt(20))


def test_nan_and_inf_gradients_come_through_as_signals() -> None:
    grads = {
        "good": {"weight": mx.ones((3, 3))},
        "bad": {"weight": mx.array([[1.0, float("nan")], [0.0, 1.0]])},
        "huge": {"weight": mx.array([float("inf"), 1.0])},
    }
    norms = layer_grad_norms(grads)
    assert norms.per_layer["good"] == pytest.approx(3.0)
    assert math.isnan(norms.per_layer["bad"])
    assert math.isinf(norms.per_layer["huge"])
    assert math.isnan(norms.global_norm)


def test_half_precision_gradients_do_not_overflow() -> None:
    grads = {"fc": {"weight": mx.full((16, 16), 300.0, dtype=mx.float16)}}
    norms = layer_grad_norms(grads)
    assert norms.per_layer["fc"] == pytest.approx(300.0 * 16, rel=1e-6)
    grads_bf16 = {"fc": {"weight": mx.full((4,), 0.5, dtype=mx.bfloat16)}}
    assert layer_grad_norms(grads_bf16).global_norm == pytest.approx(1.0)


def test_lists_scalars_and_non_arrays() -> None:
    grads = {"scale": mx.array(3.0), "blocks": [mx.array([4.0]), None], "step": 7}
    norms = layer_grad_norms(grads)
    assert norms.per_layer == {"scale": pytest.approx(3.0), "blocks": pytest.approx(4.0)}
    assert norms.global_norm == pytest.approx(5.0)


def test_empty_tree_has_zero_norm() -> None:
    assert layer_grad_norms({}) == GradientNorms({}, 0.0, False, 0)


def test_max_series_must_be_positive() -> None:
    with pytest.raises(ValueError, match="0"):
        layer_grad_norms({"w": mx.ones((2,))}, max_series=0)


def test_repeated_calls_follow_changing_values() -> None:
    weight = mx.ones((4, 4))
    first = layer_grad_norms({"fc": {"weight": weight}})
    second = layer_grad_norms({"fc": {"weight": 2 * weight}})
    assert second.global_norm == pytest.approx(2 * first.global_norm)


def test_mlx_and_host_reductions_agree_with_numpy() -> None:
    # The CPU device reads leaves in place; GPUs (and bfloat16) reduce in MLX.
    from mlx_otel.numbers.gradients import (
        _array_leaves,
        _leaf_squares_host,
        _leaf_squares_mlx,
        _plan,
    )

    grads = model_gradients()
    leaves: list[tuple[str, mx.array]] = []
    _array_leaves(grads, "", leaves)
    plan = _plan(tuple((p, tuple(a.shape), a.dtype) for p, a in leaves), 64)
    assert [p for p, _ in leaves] == [p for p, _ in tree_flatten(grads)]
    arrays = [a for _, a in leaves]
    expected = [float(np.sum(np.array(a, dtype=np.float64) ** 2)) for a in arrays]
    np.testing.assert_allclose(_leaf_squares_mlx(arrays, plan), expected, rtol=1e-5)
    np.testing.assert_allclose(_leaf_squares_host(arrays), expected, rtol=1e-5)


def test_bfloat16_model_gradients_match_numpy() -> None:
    grads = model_gradients()
    as_bf16 = {
        "mlp": [{k: v.astype(mx.bfloat16) for k, v in layer.items()} for layer in grads["mlp"]],
        "wide": {"weight": grads["wide"]["weight"].astype(mx.bfloat16)},
    }
    expected, expected_global = numpy_layer_norms(as_bf16)
    norms = layer_grad_norms(as_bf16)
    for layer, value in expected.items():
        assert norms.per_layer[layer] == pytest.approx(value, rel=1e-5)
    assert norms.global_norm == pytest.approx(expected_global, rel=1e-5)


def test_unevaluated_gradients_are_evaluated_once() -> None:
    mx.random.seed(3)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    x = mx.random.normal((5, 8))
    _, lazy_grads = nn.value_and_grad(model, lambda m: m(x).sum())(model)
    norms = layer_grad_norms(lazy_grads)  # before any mx.eval
    expected, expected_global = numpy_layer_norms(lazy_grads)
    assert set(norms.per_layer) == {"layers.0", "layers.2"}
    assert norms.per_layer["layers.2"] == pytest.approx(expected["layers.2"], rel=1e-5)
    assert norms.global_norm == pytest.approx(expected_global, rel=1e-5)


def test_nan_survives_the_mlx_route_too() -> None:
    grads = {"bad": {"weight": mx.array([1.0, float("nan")], dtype=mx.bfloat16)}}
    assert math.isnan(layer_grad_norms(grads).per_layer["bad"])
