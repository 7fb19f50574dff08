"""Layer-wise L2 norms of an MLX gradient tree, with bounded cardinality.

One call per step turns the tree ``mlx.nn.value_and_grad`` returns into a
:class:`GradientNorms`: one norm per layer (module) and the global norm.
There is exactly one synchronisation with MLX per call, never one
``.item()`` per layer:

- on a GPU, MLX computes every leaf's sum of squares in one evaluation
  (small same-shape leaves are stacked so that the number of operations
  stays small) and the sums come back in one conversion to numpy;
- on the CPU device, where MLX arrays already live in host memory, the
  leaves are evaluated once and numpy reads them in place: on this backend
  that is several times faster than MLX's own reductions. bfloat16 trees,
  which numpy cannot view, take the first route.

Nothing here imports OpenTelemetry or Prometheus; the telemetry layer reads
``GradientNorms.per_layer`` into the ``layer`` label.

Example::

    loss, grads = nn.value_and_grad(model, loss_fn)(model, x, y)
    norms = layer_grad_norms(grads, max_series=64)
    print(norms.global_norm, norms.per_layer["layers.0"])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

__all__ = ["OTHER_LAYERS", "GradientNorms", "layer_grad_norms", "layer_name"]

#: Series that collects layers when even top-level names exceed ``max_series``.
OTHER_LAYERS = "other"

# Leaves up to this size are stacked per shape and reduced together: with
# many small layers the fixed cost of each MLX operation dominates, while a
# large leaf is reduced on its own so that no big copy is made.
_STACK_MAX_ELEMENTS = 1 << 16
# Bound on one stacked chunk (elements), which bounds the temporary copy.
_STACK_MAX_CHUNK = 1 << 22
# Dtypes numpy can view in place (numpy has no bfloat16).
_HOST_DTYPES = frozenset({mx.float16, mx.float32, mx.float64})


@dataclass(frozen=True)
class GradientNorms:
    """Gradient L2 norms of one step.

    ``per_layer`` maps a layer name (or, when ``grouped``, a group such as
    ``"layers.0-3"``) to the L2 norm over its parameters; ``global_norm`` is
    the L2 norm over all of them (the usual clipping norm). NaN and inf come
    through unchanged: they mean the step has diverged. ``layer_count`` is
    the number of layers before grouping.

    Example::

        norms = layer_grad_norms(grads)
        worst = max(norms.per_layer, key=norms.per_layer.__getitem__)
    """

    per_layer: dict[str, float]
    global_norm: float
    grouped: bool
    layer_count: int = 0


def layer_name(path: str) -> str:
    """The layer a parameter path belongs to: the path without its leaf name.

    ``weight`` and ``bias`` of one module thus share a layer.

    Example::

        layer_name("layers.0.attention.query_proj.weight")
        # -> "layers.0.attention.query_proj"
    """
    head, sep, _ = path.rpartition(".")
    return head if sep else path


def _bucket(component: str, size: int) -> str:
    low = int(component) // size * size
    return f"{low}-{low + size - 1}"


def _group_layers(layers: tuple[str, ...], max_series: int) -> tuple[tuple[str, ...], bool]:
    """Map each distinct layer to a series label, at most ``max_series`` labels.

    Paths are shortened (deepest first) until the groups fit. Before a
    shortening would drop a numbered level ("layers.17" -> "layers", one
    series for the whole stack), consecutive indices are put into ranges
    ("layers.16-19") of growing power-of-two size, which keeps the gradient
    flow over depth visible.
    """
    if len(layers) <= max_series:
        return layers, False
    split = [layer.split(".") for layer in layers]
    max_depth = max(len(parts) for parts in split)
    for depth in range(max_depth, 0, -1):
        keys = [parts[:depth] for parts in split]
        if depth < max_depth:
            labels = tuple(".".join(k) for k in keys)
            if len(set(labels)) <= max_series:
                return labels, True
        indices = [int(k[-1]) for k in keys if k[-1].isdigit()]
        if not indices:
            continue
        size = 2
        while size <= max(indices) + 1:
            labels = tuple(
                ".".join(k[:-1] + [_bucket(k[-1], size)]) if k[-1].isdigit() else ".".join(k)
                for k in keys
            )
            if len(set(labels)) <= max_series:
                return labels, True
            size *= 2
    # Even top-level names are too many: keep the first ones, fold the rest.
    tops = list(dict.fromkeys(parts[0] for parts in split))
    kept = set(tops[: max_series - 1])
    return tuple(p[0] if p[0] in kept else OTHER_LAYERS for p in split), True


@dataclass(frozen=True)
class _Plan:
    """How to reduce one tree structure; cached because it repeats every step."""

    chunks: tuple[tuple[int, ...], ...]  # leaf indices reduced together
    order: np.ndarray  # leaf index of each reduced value, in output order
    series_of_leaf: np.ndarray  # series index of each leaf
    labels: tuple[str, ...]  # series labels
    grouped: bool
    layer_count: int
    host_readable: bool  # every dtype has a numpy equivalent (not bfloat16)


@functools.lru_cache(maxsize=16)
def _plan(structure: tuple[tuple[str, tuple[int, ...], Any], ...], max_series: int) -> _Plan:
    paths = [path for path, _, _ in structure]
    layers_of_leaf = [layer_name(p) for p in paths]
    layers = tuple(dict.fromkeys(layers_of_leaf))
    group_of_layer, grouped = _group_layers(layers, max_series)
    labels = tuple(dict.fromkeys(group_of_layer))
    series_index = {label: i for i, label in enumerate(labels)}
    layer_to_series = {
        layer: series_index[group] for layer, group in zip(layers, group_of_layer, strict=True)
    }
    series_of_leaf = np.array([layer_to_series[layer] for layer in layers_of_leaf], dtype=np.intp)

    by_shape: dict[tuple[tuple[int, ...], Any], list[int]] = {}
    chunks: list[tuple[int, ...]] = []
    for i, (_, shape, dtype) in enumerate(structure):
        size = int(np.prod(shape)) if shape else 1
        if size > _STACK_MAX_ELEMENTS:
            chunks.append((i,))
            continue
        members = by_shape.setdefault((shape, dtype), [])
        if members and (len(members) + 1) * size > _STACK_MAX_CHUNK:
            chunks.append(tuple(members))
            members.clear()
        members.append(i)
    chunks.extend(tuple(m) for m in by_shape.values() if m)
    order = np.array([i for chunk in chunks for i in chunk], dtype=np.intp)
    host_readable = all(dtype in _HOST_DTYPES for _, _, dtype in structure)
    return _Plan(tuple(chunks), order, series_of_leaf, labels, grouped, len(layers), host_readable)


def _array_leaves(tree: Any, prefix: str, out: list[tuple[str, mx.array]]) -> None:
    """Append ``(path, array)`` for every array in ``tree``, as ``tree_flatten`` names them.

    A direct walk is about twice as fast as ``mlx.utils.tree_flatten`` here,
    and skips non-array leaves on the way.
    """
    if isinstance(tree, mx.array):
        out.append((prefix[:-1], tree))
    elif isinstance(tree, dict):
        for key, value in tree.items():
            _array_leaves(value, f"{prefix}{key}.", out)
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            _array_leaves(value, f"{prefix}{index}.", out)


def _as_float32(a: mx.array) -> mx.array:
    # Half-precision squares overflow at 256 (float16) and lose digits; float32
    # is MLX's widest type on every device.
    return a if a.dtype == mx.float32 else a.astype(mx.float32)


def _squares_summed(a: mx.array, *, batched: bool) -> mx.array:
    """Sum of squares of ``a`` (per leading index when ``batched``).

    The first reduction runs over the leading data axis (a strided sum,
    several times faster than one long contiguous sum on MLX's CPU backend
    and as fast on the GPU), the rest over what remains.
    """
    q = mx.square(_as_float32(a))
    first = 1 if batched else 0
    if q.ndim - first >= 2:
        q = mx.sum(q, axis=first)
    if q.ndim - first >= 1:
        q = mx.sum(q, axis=tuple(range(first, q.ndim)))
    return q if q.ndim == 1 else q.reshape(-1)


def _leaf_squares_mlx(arrays: list[mx.array], plan: _Plan) -> np.ndarray:
    """Sum of squares of every leaf, computed by MLX in one evaluation."""
    parts = []
    for chunk in plan.chunks:
        if len(chunk) == 1:
            parts.append(_squares_summed(arrays[chunk[0]], batched=False))
        else:
            parts.append(_squares_summed(mx.stack([arrays[i] for i in chunk]), batched=True))
    reduced = parts[0] if len(parts) == 1 else mx.concatenate(parts)
    # The one synchronisation point: evaluates every sum and copies them out.
    values = np.array(reduced, dtype=np.float64)
    squares = np.empty(len(arrays), dtype=np.float64)
    squares[plan.order] = values
    return squares


def _leaf_squares_host(arrays: list[mx.array]) -> np.ndarray:
    """Sum of squares of every leaf, read in place by numpy after one evaluation.

    Only for the CPU device: there MLX arrays already live in host memory,
    numpy views them without a copy, and its dot product is several times
    faster than MLX's CPU reductions, with no per-operation dispatch.
    """
    mx.eval(arrays)  # the one synchronisation point (free when already evaluated)
    squares = np.empty(len(arrays), dtype=np.float64)
    for i, array in enumerate(arrays):
        view = np.asarray(array)
        if view.dtype == np.float16:
            view = view.astype(np.float32)  # float16 squares overflow at 256
        flat = view.reshape(-1)
        squares[i] = np.dot(flat, flat)
    return squares


def layer_grad_norms(grads: Any, *, max_series: int = 64) -> GradientNorms:
    """L2 gradient norm of every layer and overall, with one synchronisation.

    ``grads`` is the (nested dict/list) tree ``mlx.nn.value_and_grad``
    returns, or a flat ``{path: array}`` mapping. Layers are parameter paths
    without their leaf name, so a module's weight and bias make one norm.
    With more than ``max_series`` layers, layers are grouped by module
    prefix (see ``_group_layers``); a group's norm is the L2 norm over its
    members, so the global norm never changes. Leaves that are not
    ``mx.array`` are ignored. Gradients that are not evaluated yet are
    evaluated here. Sums of squares are accumulated in float32 per leaf and
    float64 across leaves.

    Example::

        norms = layer_grad_norms(grads, max_series=64)
        norms.per_layer["layers.0.attention.query_proj"]
    """
    if max_series < 1:
        raise ValueError(f"max_series must be >= 1, got {max_series!r}")
    leaves: list[tuple[str, mx.array]] = []
    _array_leaves(grads, "", leaves)
    if not leaves:
        return GradientNorms(per_layer={}, global_norm=0.0, grouped=False, layer_count=0)
    plan = _plan(tuple((path, tuple(a.shape), a.dtype) for path, a in leaves), max_series)

    arrays = [a for _, a in leaves]
    if plan.host_readable and mx.default_device() == mx.cpu:
        leaf_squares = _leaf_squares_host(arrays)
    else:
        leaf_squares = _leaf_squares_mlx(arrays, plan)
    series_squares = np.bincount(
        plan.series_of_leaf, weights=leaf_squares, minlength=len(plan.labels)
    )
    norms = np.sqrt(series_squares)
    return GradientNorms(
        per_layer=dict(zip(plan.labels, norms.tolist(), strict=True)),
        global_norm=float(np.sqrt(leaf_squares.sum())),
        grouped=plan.grouped,
        layer_count=plan.layer_count,
    )
