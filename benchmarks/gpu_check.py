"""GPU check of issue 14 in one run (about 5 minutes on one GPU): prints one Markdown table.

    .venv/bin/python benchmarks/gpu_check.py                 # on a machine with a CUDA GPU
    .venv/bin/python benchmarks/gpu_check.py --device cpu --small   # a dry run of the script

Rows (I3D with random weights; speed does not depend on the weights):

1. batch vs explain: ``run_batch`` clips/s on synthetic 640x360 videos (decode workers = cores
   - 1) against ``mr.explain`` + ``mr.selective_relevance`` clips/s on the same clips already
   decoded (goal: >= 0.7);
2. ``motion-relevance explain --device cuda`` on a short video: exit code;
3. CPU vs GPU relative L2 of the maps of every gradient method, TF32 off (default) and on;
4. host synchronisations in one ``explain`` call (``torch.cuda.set_sync_debug_mode``);
5. bfloat16 vs float32: relative L2, mask agreement, motion share and score differences, speed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import motion_relevance as mr
from motion_relevance.batch import run_batch
from motion_relevance.video import write_video

GRADIENT = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "guided_backprop", "deconvolution")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm())


def _videos(folder: Path, n: int, frames: int, w: int, h: int) -> Path:
    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for i in range(n):
        clip = rng.integers(0, 90, size=(frames, h, w, 3), dtype=np.uint8)
        for t in range(frames):
            x = (9 * t + 31 * i) % (w - 80)
            clip[t, h // 3 : h // 3 + 80, x : x + 80] = (230, 210, 60)
        write_video(folder / f"v{i}.mp4", clip, fps=25.0)
        lines.append(f"v{i}.mp4,")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes (a dry run of the script on a CPU)")
    args = parser.parse_args()
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU here; pass --device cpu --small for a dry run")
    small = args.small
    rows: list[tuple[str, str, str]] = []
    model, spec = mr.load_model("i3d-kinetics400", weights="random")
    model = model.to(dev).eval()
    size = 64 if small else spec.size[0]
    frames = 16 if small else spec.frames
    g = torch.Generator().manual_seed(0)
    clips = torch.rand(2 if small else 8, 3, frames, size, size, generator=g) * 4 - 2

    # 1. batch vs explain on the same clips
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_videos, v_frames = (2, 16) if small else (64, 32)
        manifest = _videos(folder, n_videos, v_frames, 160 if small else 640, 96 if small else 360)
        workers = max(1, (os.cpu_count() or 2) - 1)
        start = time.perf_counter()
        result = run_batch(manifest, folder / "store", model="i3d-kinetics400", weights="random", methods="saliency",
                           device=dev, clip_batch=16, decode_workers=workers)  # fmt: skip
        batch_cps = result.clips / (time.perf_counter() - start)
        from motion_relevance.batch import read_manifest
        from motion_relevance.batch.pipeline import BatchSettings, prepare_unit

        settings = BatchSettings(methods=("saliency",), clip_batch=16)
        decoded = [c.inputs for e in read_manifest(manifest) for c in prepare_unit(e, spec, settings)]
        mr.explain(model, decoded[0].to(dev), "saliency", spec=spec)  # warm-up
        _sync(dev)
        start = time.perf_counter()
        n = 0
        for x in decoded:
            expl = mr.explain(model, x.to(dev), "saliency", spec=spec)
            mr.selective_relevance(expl.relevance, 1.0).motion_share.cpu()
            n += x.shape[0]
        _sync(dev)
        explain_cps = n / (time.perf_counter() - start)
        rows.append(("1 batch / explain (saliency, I3D, same clips)", f"{batch_cps:.1f} / {explain_cps:.1f} clips/s",
                     f"{batch_cps / explain_cps:.2f} (goal >= 0.7; {workers} decode workers)"))  # fmt: skip

        # 2. the CLI on this device
        code = subprocess.run([sys.executable, "-m", "motion_relevance.cli", "explain", str(folder / "v0.mp4"),
                               "--model", "i3d-kinetics400", "--weights", "random", "--method", "saliency",
                               "--device", dev, "--out", str(folder / "explained")],
                              capture_output=True, text=True).returncode  # fmt: skip
        rows.append((f"2 explain --device {dev}", f"exit code {code}", "ok" if code == 0 else "FAILED"))

    # 3. CPU vs device maps
    cpu_model = model.to("cpu") if dev != "cpu" else model
    x = clips[:2]
    for method in GRADIENT:
        opts = {"integrated_gradients": {"n_steps": 8}, "smoothgrad": {"samples": 4}}.get(method, {})
        ref = mr.explain(cpu_model, x, method, spec=spec, seed=3, **opts).relevance
        on_dev = model.to(dev)
        a = mr.explain(on_dev, x.to(dev), method, spec=spec, seed=3, **opts).relevance
        b = mr.explain(on_dev, x.to(dev), method, spec=spec, seed=3, tf32=True, **opts).relevance
        rows.append((f"3 CPU vs {dev}: {method}", f"rel L2 {_rel(a, ref):.2e} (TF32 on: {_rel(b, ref):.2e})",
                     "ok" if _rel(a, ref) <= 1e-3 else "over 1e-3"))  # fmt: skip
        cpu_model = model.to("cpu") if dev != "cpu" else model
    model = model.to(dev)

    # 4. host synchronisations per explain call
    xd = clips.to(dev)
    for method in ("saliency", "gradcam"):
        mr.explain(model, xd, method, spec=spec)
        if dev.startswith("cuda"):
            torch.cuda.set_sync_debug_mode("warn")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                mr.explain(model, xd, method, spec=spec)
            torch.cuda.set_sync_debug_mode("default")
            count = str(sum("synchroniz" in str(w.message).lower() for w in caught))
        else:
            count = "n/a on CPU"
        rows.append((f"4 host syncs in one explain ({method})", count, "goal <= 1"))

    # 5. bfloat16 vs float32, on the trained weights when they are here (random ones exaggerate)
    try:
        model, spec = mr.load_model("i3d-kinetics400")
        weights = "trained"
    except Exception:
        weights = "random"
    model = model.to(dev).eval()
    for method in ("saliency", "gradcam", "lrp_epsilon_plus_flat"):
        timings = {}
        maps = {}
        for precision in ("float32", "bf16"):
            mr.explain(model, xd, method, spec=spec, precision=precision)
            _sync(dev)
            start = time.perf_counter()
            maps[precision] = mr.explain(model, xd, method, spec=spec, precision=precision).relevance
            _sync(dev)
            timings[precision] = time.perf_counter() - start
        s32, s16 = (mr.selective_relevance(maps[p], 1.0) for p in ("float32", "bf16"))
        agree = float((s32.mask == s16.mask).float().mean())
        d_share = float((s32.motion_share - s16.motion_share).abs().max())
        d_score = float((s32.motion_score - s16.motion_score).abs().max())
        rows.append((f"5 bf16 vs float32: {method} ({weights} weights)",
                     f"rel L2 {_rel(maps['bf16'], maps['float32']):.3f}, mask agreement {agree:.4f}, "
                     f"|d share| {d_share:.4f}, |d score| {d_score:.4f}",
                     f"speed x{timings['float32'] / timings['bf16']:.2f}"))  # fmt: skip

    name = torch.cuda.get_device_name() if dev.startswith("cuda") else "CPU"
    print(f"GPU check, {time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, {os.cpu_count()} cores")
    print("| check | measured | verdict |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
