"""Cost of each explanation method relative to the passes it needs (issue #3's benchmark).

For every method: wall time of ``mr.explain`` divided by (number of model passes it needs x the
time of one such pass), all measured in the same run on ``r3d_18`` (random weights) with one
clip of 16x112x112 and 2 threads. One "pass" is a forward + backward to the input for gradient
methods and LRP, and a forward without gradient for occlusion. A ratio near 1 means the method
adds no overhead beyond the passes it cannot avoid. Target: <= 1.10 for every gradient-based
method. LRP rules re-evaluate each layer in the backward pass (Zennit), so their ratio is
expected to be higher; it is reported, not targeted.

    python benchmarks/bench_methods.py            # 16x112x112, about 10 minutes on 2 idle cores
    python benchmarks/bench_methods.py --quick    # 8x56x56, seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.models.video import r3d_18

from motion_relevance.attribution import explain
from motion_relevance.attribution.gradient import occlusion_windows
from motion_relevance.attribution.registry import get_method, list_methods

# the target applies to the gradient-based families of the registry (plain gradients and CAM)
GRADIENT_BASED = {m.name for m in (get_method(i.name) for i in list_methods()) if m.kind in ("gradient", "cam")}
TARGET = 1.10


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median (wall time, process CPU time) of ``repeats`` calls. CPU time is reported too
    because on a shared machine the wall time mostly measures the neighbours."""
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x56x56 clip instead of 16x112x112")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per single-pass method")
    parser.add_argument("--steps", type=int, default=None,
                        help="n_steps of IG and samples of SmoothGrad (default: the methods' defaults, 32 and 16)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames, size = (8, 56) if args.quick else (16, 112)
    model = r3d_18().eval()  # 400 classes, random weights
    x = torch.randn(1, 3, frames, size, size)
    target = int(model(x).argmax())
    for p in model.parameters():  # as explain runs it: parameters frozen
        p.requires_grad_(False)

    def forward_backward() -> None:
        clip = x.clone().requires_grad_(True)
        torch.autograd.grad(model(clip)[0, target], clip)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    forward_backward()  # warm-up
    window = (frames // 2, size // 2, size // 2)
    n_ig = args.steps or 32
    n_sg = args.steps or 16
    methods: list[tuple[str, dict, float, str]] = [
        ("saliency", {}, 1, "fb"),
        ("input_x_gradient", {}, 1, "fb"),
        ("integrated_gradients", {"n_steps": n_ig}, n_ig, "fb"),
        ("smoothgrad", {"samples": n_sg}, n_sg, "fb"),
        ("guided_backprop", {}, 1, "fb"),
        ("deconvolution", {}, 1, "fb"),
        ("gradcam", {}, 1, "fb"),
        ("guided_gradcam", {}, 2, "fb"),
        # occlusion: one forward per window plus Captum's and our look at the unmodified clip
        ("occlusion", {"window": window}, occlusion_windows(tuple(x.shape[1:]), window, window) + 2, "f"),
        ("lrp_epsilon_plus_flat", {}, 1, "fb"),
        ("lrp_alpha2_beta1", {}, 1, "fb"),
        ("deep_taylor", {}, 1, "fb"),
    ]
    # The unit pass is timed right before and right after each method and averaged, so a
    # machine whose load drifts (shared CPUs) biases the ratios as little as possible.
    rows = []
    for name, opts, passes, unit_kind in methods:
        multi = name in {"integrated_gradients", "smoothgrad", "occlusion"}
        # warm-up: first-call costs (dry run that finds layers, lazy imports) are cached
        warm = {"integrated_gradients": {"n_steps": 1}, "smoothgrad": {"samples": 1}}.get(name, opts)
        explain(model, x, name, target=target, **warm)
        unit_fn = forward_backward if unit_kind == "fb" else forward
        before = timed(unit_fn, args.repeats)
        wall = timed(lambda name=name, opts=opts: explain(model, x, name, target=target, **opts),
                     1 if multi else args.repeats)
        after = timed(unit_fn, args.repeats)
        rows.append((name, passes, unit_kind, wall, before, after))

    print(f"r3d_18, one clip 3x{frames}x{size}x{size}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("ratio = time / (passes x unit pass), unit pass timed just before and after each method")
    print(f"{'method':24s} {'passes':>7s} {'pass':>4s} {'unit wall/cpu ms':>17s} {'wall s':>7s} "
          f"{'ratio':>6s} {'cpu s':>7s} {'ratio':>6s}  target (wall, cpu)")
    failed = []
    for name, passes, unit_kind, (wall, cpu), before, after in rows:
        unit_wall, unit_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        r_wall, r_cpu = wall / (passes * unit_wall), cpu / (passes * unit_cpu)
        if name in GRADIENT_BASED:
            verdict = ["ok" if r <= TARGET else "MISSED" for r in (r_wall, r_cpu)]
            note = f"<= {TARGET:.2f}: {verdict[0]}, {verdict[1]}"
            if "MISSED" in verdict:
                failed.append(name)
        else:
            note = "(reported)"
        kind = "f+b" if unit_kind == "fb" else "f"
        units = f"{unit_wall * 1000:.0f}/{unit_cpu * 1000:.0f}"
        print(f"{name:24s} {passes:7.0f} {kind:>4s} {units:>17s} {wall:7.2f} {r_wall:6.2f} {cpu:7.2f} {r_cpu:6.2f}  {note}")
    print("all gradient-based methods within target" if not failed else f"missed target: {', '.join(failed)}")


if __name__ == "__main__":
    main()
