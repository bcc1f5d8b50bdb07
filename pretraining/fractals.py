"""FractalDB-style formula-driven images: categories are random iterated function systems (IFS), instances are
small perturbations of a category's system, rendered as greyscale point densities.

Follows FractalDB (Kataoka et al., "Pre-training without Natural Images", ACCV 2020), whose parameter search
(`param_search/ifs_search.py` in the authors' code) draws a category as N ~ randint(2, 8) affine maps
`(x, y) -> (a x + b y + e, c x + d y + f)` with all six parameters ~ U(-1, 1), picks map i with probability
proportional to |det A_i| = |a d - b c|, and keeps the system when the rendered fractal fills at least 20% of the
image ("filling rate"). FractalDB makes the instances of a category by weighting one parameter (x0.8 ... x1.2) and
by flipping; we do the same at 32x32 pixels. Everything is vectorised over images with numpy and driven by one
`numpy.random.Generator`, so the same seed gives the same arrays on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_MAPS = 7  # randint(2, 8) draws 2..7 maps, as in FractalDB's search
BURN_IN = 16  # chaos-game steps dropped before plotting, while the point falls onto the attractor
CHUNK = 2048  # images iterated at once: bounds the memory of the chaos game
DIVERGED = 1e6  # a coordinate beyond this means the system is not contractive on average: rejected


@dataclass(frozen=True)
class FractalSpec:
    """How categories are searched and instances rendered."""

    image_size: int = 32
    points: int = 1500  # chaos-game points per image
    search_size: int = 64  # resolution at which the filling rate is measured
    search_points: int = 4000
    filling_rate: float = 0.2  # FractalDB's threshold
    weights: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2)  # FractalDB's parameter weighting


def random_systems(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` random IFS as FractalDB draws them: maps (count, MAX_MAPS, 6) and probabilities (count, MAX_MAPS).

    Unused map slots have probability 0, so they are never chosen.
    """
    num_maps = rng.integers(2, MAX_MAPS + 1, size=count)
    maps = rng.uniform(-1.0, 1.0, size=(count, MAX_MAPS, 6))
    used = np.arange(MAX_MAPS)[None, :] < num_maps[:, None]
    determinant = np.abs(maps[..., 0] * maps[..., 3] - maps[..., 1] * maps[..., 2]) * used
    return maps, determinant / determinant.sum(axis=1, keepdims=True)


def chaos_game(rng: np.random.Generator, maps: np.ndarray, probabilities: np.ndarray, points: int) -> np.ndarray:
    """Points (n, points, 2) on the attractors of n systems, all iterated at once (the chaos game)."""
    n = len(maps)
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative[:, -1] = 1.0  # guard the last bin against rounding
    rows = np.arange(n)
    xy = np.zeros((n, 2))
    out = np.empty((n, points, 2))
    draws = rng.random((BURN_IN + points, n))
    for step in range(BURN_IN + points):
        choice = (draws[step][:, None] > cumulative).sum(axis=1)
        a, b, c, d, e, f = maps[rows, choice].T
        x, y = xy[:, 0], xy[:, 1]
        xy = np.stack([a * x + b * y + e, c * x + d * y + f], axis=1)
        np.clip(xy, -DIVERGED, DIVERGED, out=xy)  # keeps diverging systems finite; they are rejected later
        if step >= BURN_IN:
            out[:, step - BURN_IN] = xy
    return out


def render(points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Greyscale images (n, size, size) of point clouds, each scaled to fill its frame, and which are finite.

    A pixel's value grows with the log of the number of points that land in it, as FractalDB's renderer draws
    every point; the log keeps the dense centres from drowning the thin arms.
    """
    n = len(points)
    low, high = points.min(axis=1, keepdims=True), points.max(axis=1, keepdims=True)
    extent = (high - low).max(axis=2, keepdims=True)
    usable = (np.abs(points).max(axis=(1, 2)) < DIVERGED) & (extent[:, 0, 0] > 1e-9)
    centre = (low + high) / 2
    scaled = (points - centre) / np.where(extent > 0, extent, 1.0)  # in [-0.5, 0.5], aspect ratio kept
    pixels = np.clip(((scaled + 0.5) * (size - 1)).round().astype(np.int64), 0, size - 1)
    flat = np.arange(n)[:, None] * size * size + pixels[..., 1] * size + pixels[..., 0]
    counts = np.bincount(flat.ravel(), minlength=n * size * size).reshape(n, size, size).astype(np.float64)
    density = np.log1p(counts)
    peak = density.max(axis=(1, 2), keepdims=True)
    images = np.where(peak > 0, density / np.where(peak > 0, peak, 1.0), 0.0)
    return (images * 255).round().astype(np.uint8), usable


def search_categories(rng: np.random.Generator, count: int, spec: FractalSpec, batch: int = 512):
    """`count` IFS that pass FractalDB's filling-rate test, in the order they were found."""
    kept_maps, kept_probabilities = [], []
    while sum(len(m) for m in kept_maps) < count:
        maps, probabilities = random_systems(rng, batch)
        images, usable = render(chaos_game(rng, maps, probabilities, spec.search_points), spec.search_size)
        filling = (images > 0).mean(axis=(1, 2))
        keep = usable & (filling >= spec.filling_rate)
        kept_maps.append(maps[keep])
        kept_probabilities.append(probabilities[keep])
    return np.concatenate(kept_maps)[:count], np.concatenate(kept_probabilities)[:count]


def render_instances(
    rng: np.random.Generator, maps: np.ndarray, probabilities: np.ndarray, per_category: int, spec: FractalSpec
) -> tuple[np.ndarray, np.ndarray]:
    """`per_category` images of every category: uint8 (n, size, size) and labels (n,), grouped by category.

    An instance weights one parameter of one used map by a factor from `spec.weights` (FractalDB's intra-category
    variation), is flipped horizontally and/or vertically at random, and gets its own chaos-game points.
    """
    categories = len(maps)
    labels = np.repeat(np.arange(categories), per_category)
    instance_maps = maps[labels].copy()
    instance_probabilities = probabilities[labels]
    # one used map per instance, chosen uniformly among the used ones (the first N slots)
    which_map = (rng.random(len(labels)) * (instance_probabilities > 0).sum(axis=1)).astype(np.int64)
    which_parameter = rng.integers(0, 6, size=len(labels))
    weight = rng.choice(np.asarray(spec.weights), size=len(labels))
    instance_maps[np.arange(len(labels)), which_map, which_parameter] *= weight
    images = np.concatenate(
        [
            render(
                chaos_game(rng, instance_maps[i : i + CHUNK], instance_probabilities[i : i + CHUNK], spec.points),
                spec.image_size,
            )[0]
            for i in range(0, len(labels), CHUNK)
        ]
    )
    flips = rng.integers(0, 4, size=len(labels))
    images[flips % 2 == 1] = images[flips % 2 == 1][:, :, ::-1]
    images[flips >= 2] = images[flips >= 2][:, ::-1, :]
    return images, labels
