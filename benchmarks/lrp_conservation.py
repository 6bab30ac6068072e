"""Does LRP conserve relevance on every preset? (issue 16's closing table)

For each preset: random weights (``weights="random"``), one random clip at the preset's own input
size (random uint8 frames through ``spec.preprocess``), then ``lrp_epsilon_plus_flat`` and
``lrp_alpha2_beta1`` with ``ignore_bias=True``. The table gives the sum of the input relevance,
the explained logit and their relative difference; a preset where a method is refused, or
where the check of ``explain`` rejects the map, shows the one-line error instead. ``--real-i3d``
adds I3D with its Kinetics-400 weights (``make weights``, first), ``--budget`` prints the per-layer
relevance budget of the first rows that miss the tolerance.

    nice -n 10 python benchmarks/lrp_conservation.py                  # all presets, minutes
    nice -n 10 python benchmarks/lrp_conservation.py c3d s3d --real-i3d
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import motion_relevance as mr
from motion_relevance.errors import MotionRelevanceError

PRESETS = ("r3d_18", "mc3_18", "r2plus1d_18", "c3d", "i3d-kinetics400", "s3d", "mvit_v2_s", "swin3d_t")
METHODS = ("lrp_epsilon_plus_flat", "lrp_alpha2_beta1")


def random_clip(spec: mr.InputSpec, seed: int = 0) -> torch.Tensor:
    """One clip at the spec's input size from uniformly random pixels, preprocessed as real frames are."""
    rng = np.random.default_rng(seed)
    h, w = spec.size
    frames = rng.integers(0, 256, size=(spec.frames, h, w, 3), dtype=np.uint8)
    return spec.preprocess(frames)[:1]


def row(preset: str, weights: str | None, method: str, budget: bool) -> tuple[str, dict | None]:
    torch.manual_seed(0)
    model, spec = mr.load_model(preset, weights=weights)
    x = random_clip(spec)
    label = f"{preset}{' (real weights)' if weights is None else ''}"
    start = time.perf_counter()
    try:
        extra = {"layer_budget": True} if budget else {}
        expl = mr.explain(model, x, method, ignore_bias=True, **extra)
    except MotionRelevanceError as exc:
        return f"| {label} | {method} | {time.perf_counter() - start:.0f} s | error: {exc} |", None
    total = float(expl.relevance.double().sum())
    logit = float(expl.logits[0, expl.target[0]])
    err = abs(total - logit) / abs(logit)
    finite = bool(torch.isfinite(expl.relevance).all())
    return (
        f"| {label} | {method} | {time.perf_counter() - start:.0f} s | Σ R = {total:.4g}, logit {logit:.4g}, "
        f"off by {100 * err:.3g} %{'' if finite else ', NOT FINITE'} |",
        expl.options.get("layer_budget") if budget else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--real-i3d", action="store_true", help="add I3D with its Kinetics-400 weights")
    parser.add_argument("--budget", action="store_true", help="print per-layer relevance sums (layer_budget=True)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs: list[tuple[str, str | None]] = [(p, "random") for p in args.presets]
    if args.real_i3d:
        runs.insert(0, ("i3d-kinetics400", None))
    print("| preset | method | time | result |\n|---|---|---|---|", flush=True)
    for preset, weights in runs:
        for method in args.methods:
            line, layers = row(preset, weights, method, args.budget)
            print(line, flush=True)
            if layers:
                for entry in layers:
                    print(f"    {entry}")


if __name__ == "__main__":
    main()
