"""Plant known wrong answers one at a time and show which tests catch each (issue 15's table).

Each plant is a text replacement in a copy of ``src/`` (the working tree is never edited); the
named test files run against the copy (``PYTHONPATH`` puts it before the editable install) and
the script prints a Markdown table: the plant, and the tests that failed, or SURVIVED.

    nice -n 19 .venv/bin/python scripts/mutation_plants.py            # all plants
    nice -n 19 .venv/bin/python scripts/mutation_plants.py G1 P1      # some of them
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRAD = "src/motion_relevance/attribution/gradient.py"
CAM = "src/motion_relevance/attribution/cam.py"
LRP = "src/motion_relevance/attribution/lrp.py"
SPEC = "src/motion_relevance/models/spec.py"
T_GRAD = "tests/test_oracles_gradient.py"
T_CAM = "tests/test_oracles_cam.py"
T_LRP = "tests/test_oracles_lrp.py"
T_PRE = "tests/test_preprocess_oracle.py"
T_MET = "tests/test_metrics_oracle.py"


@dataclass(frozen=True)
class Plant:
    key: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    count: int = 1
    """How many occurrences the replacement must find (0: all, at least one)."""


PLANTS = [
    Plant("G1", "input_x_gradient returns the plain gradient", GRAD,
          "InputXGradient(scorer).attribute(leaf(x))", "Saliency(scorer).attribute(leaf(x), abs=False)", (T_GRAD,)),
    Plant("G2", "guided_backprop runs DeconvNet", GRAD,
          "_relu_rule(GuidedBackprop, run, x)", "_relu_rule(Deconvolution, run, x)", (T_GRAD,)),
    Plant("G3", "deconvolution runs guided backprop", GRAD,
          "_relu_rule(Deconvolution, run, x)", "_relu_rule(GuidedBackprop, run, x)", (T_GRAD,)),
    Plant("G4", "saliency returns abs(gradient)", GRAD,
          "Saliency(scorer).attribute(leaf(x), abs=False)", "Saliency(scorer).attribute(leaf(x), abs=True)", (T_GRAD,)),
    Plant("G5", "integrated_gradients with a trapezoid Riemann sum", GRAD,
          'method="gausslegendre"', 'method="riemann_trapezoid"', (T_GRAD,)),
    Plant("G6", "integrated_gradients ignores the baseline option", GRAD,
          "baselines=baselines,", "baselines=torch.zeros_like(x),", (T_GRAD,)),
    Plant("G7", "smoothgrad noise not scaled by the value range", GRAD,
          'stdev = opts["noise"] * span', 'stdev = opts["noise"]', (T_GRAD,)),
    Plant("G8", "smoothgrad without noise (plain saliency)", GRAD, "stdevs=stdev,", "stdevs=0.0,", (T_GRAD,)),
    Plant("G9", "occlusion ignores the fill value", GRAD, 'baselines=opts["fill"],', "baselines=0.0,", (T_GRAD,)),
    Plant("G10", "occlusion windows per channel", GRAD,
          "sliding_window_shapes=(c, *window),", "sliding_window_shapes=(1, *window),", (T_GRAD,)),
    Plant("C1", "gradcam ignores relu=True", CAM, "relu_attributions=relu)", "relu_attributions=False)", (T_CAM,)),
    Plant("C2", "gradcam not spread over the channels (sum = C x CAM)", CAM,
          "(cam / x.shape[1]).expand_as(x)", "cam.expand_as(x)", (T_CAM,)),
    Plant("C3", "guided_gradcam returns guided backprop only", CAM,
          'GuidedGradCam(scorer, layer).attribute(leaf(x), interpolate_mode="trilinear")',
          "GuidedBackprop(scorer).attribute(leaf(x))", (T_CAM,)),
    Plant("C4", "gradcam upsampled with nearest neighbours", CAM,
          'LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="trilinear")',
          'LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="nearest")', (T_CAM,)),
    Plant("L1", "lrp_alpha2_beta1 runs with alpha=1, beta=0 (every layer)", LRP,
          "AlphaBeta(alpha=2.0, beta=1.0", "AlphaBeta(alpha=1.0, beta=0.0", (T_LRP,), count=0),
    Plant("L2", "lrp_alpha2_beta1 with alpha=1, beta=0 in the hidden convolutions only", LRP,
          "hidden = AlphaBeta(alpha=2.0, beta=1.0", "hidden = AlphaBeta(alpha=1.0, beta=0.0", (T_LRP,)),
    Plant("L3", "lrp_alpha2_beta1 with alpha=1, beta=0 in the first layer only", LRP,
          "return AlphaBeta(alpha=2.0, beta=1.0", "return AlphaBeta(alpha=1.0, beta=0.0", (T_LRP,)),
    Plant("L4", "lrp_epsilon_plus_flat with epsilon in the first layer", LRP,
          "rule = Flat(stabilizer=_STABLE, zero_params=zero)", "rule = Epsilon(epsilon=_STABLE, zero_params=zero)",
          (T_LRP,)),
    Plant("L5", "deep_taylor with z+ in the first layer (no box)", LRP,
          "return ZBox(low=low, high=high, stabilizer=_STABLE, zero_params=zero)",
          "return ZPlus(stabilizer=_STABLE, zero_params=zero)", (T_LRP,)),
    Plant("L6", "epsilon methods with z+ in the classifier", LRP,
          "classifier = Epsilon(epsilon=epsilon, zero_params=zero)", "classifier = ZPlus(stabilizer=_STABLE, zero_params=zero)",
          (T_LRP,)),
    Plant("L7", "deep_taylor with alpha2-beta1 in hidden convolutions", LRP,
          "hidden: Hook = ZPlus(stabilizer=_STABLE, zero_params=zero)",
          "hidden: Hook = AlphaBeta(alpha=2.0, beta=1.0, stabilizer=_STABLE, zero_params=zero)", (T_LRP,)),
    Plant("P1", "every preset's frames cropped top-left instead of centred", SPEC,
          "top, left = (h - th) // 2, (w - tw) // 2", "top, left = 0, 0", (T_PRE,)),
    Plant("P2", "channel order ignored (BGR models get RGB)", SPEC,
          'if self.channel_order == "BGR":', 'if self.channel_order == "none":', (T_PRE,)),
    Plant("P3", "resize without antialiasing", SPEC, "antialias=True", "antialias=False", (T_PRE,)),
    Plant("P4", "crop moved by one pixel", SPEC,
          "top, left = (h - th) // 2, (w - tw) // 2", "top, left = (h - th) // 2 + 1, (w - tw) // 2", (T_PRE,)),
    Plant("P5", "short side resized with the long side's factor", SPEC,
          "short = min(h, w)", "short = max(h, w)", (T_PRE,)),
    Plant("M1", "AUROC of the two groups swapped", "src/motion_relevance/metrics/separation.py",
          "u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0",
          "u = ranks[pos.size :].sum() - neg.size * (neg.size + 1) / 2.0", (T_MET,)),
    Plant("M2", "AUROC ties broken by order instead of averaged", "src/motion_relevance/metrics/separation.py",
          "ranks[order[s:e]] = (s + e + 1) / 2.0", "ranks[order[s:e]] = np.arange(s, e) + 1.0", (T_MET,)),
    Plant("M3", "F1 replaced by p * r", "src/motion_relevance/metrics/precision.py",
          "2 * p * r / (p + r).clamp_min(1e-30)", "p * r", (T_MET,)),
    Plant("M4", "deletion's random baseline set to the motion voxels", "src/motion_relevance/metrics/deletion.py",
          "random = _top_k(noise, torch.ones_like(mask), k)", "random = mask", (T_MET,)),
    Plant("M5", "deletion's static baseline drawn from the motion voxels", "src/motion_relevance/metrics/deletion.py",
          "static = _top_k(voxel_magnitude(relevance), ~mask, k)", "static = _top_k(voxel_magnitude(relevance), mask, k)",
          (T_MET,)),
    Plant("M6", "sparsity replaced by 1 - sparsity", "src/motion_relevance/metrics/sparsity.py",
          "torch.where(b > 0, s / b.clamp_min(1.0), torch.nan)", "torch.where(b > 0, 1 - s / b.clamp_min(1.0), torch.nan)",
          (T_MET,)),
    Plant("M7", "flow threshold with the population std", "src/motion_relevance/metrics/flow.py",
          "std(dim=1, correction=1)", "std(dim=1, correction=0)", (T_MET,)),
    Plant("R1", "the report's sparsity replaced by 1 - sparsity", "src/motion_relevance/runs/video.py",
          "return self.nonzero_motion / self.nonzero_base if self.nonzero_base else None",
          "return 1 - self.nonzero_motion / self.nonzero_base if self.nonzero_base else None",
          ("tests/test_report_sparsity.py",)),
]


def run_plant(plant: Plant) -> str:
    if not (ROOT / plant.path).exists():
        return f"NOT PLANTED ({plant.path} is gone; the source changed)"
    text = (ROOT / plant.path).read_text()
    found = text.count(plant.old)
    if found == 0 or (plant.count and found != plant.count):
        return f"NOT PLANTED (found {found} occurrences of the text; the source changed)"
    with tempfile.TemporaryDirectory(prefix="plant-") as tmp:
        shutil.copytree(ROOT / "src", Path(tmp) / "src", ignore=shutil.ignore_patterns("__pycache__"))
        target = Path(tmp) / plant.path
        target.write_text(text.replace(plant.old, plant.new))
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        where = subprocess.run([sys.executable, "-c", "import motion_relevance; print(motion_relevance.__file__)"],
                               env=env, capture_output=True, text=True, check=True).stdout.strip()
        if not where.startswith(tmp):
            raise RuntimeError(f"the planted copy is not the one imported: {where}")
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *plant.tests],
                              cwd=ROOT, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.MULTILINE)
    if proc.returncode == 0:
        return "SURVIVED"
    if not failed:
        return f"ERROR (pytest exit {proc.returncode}): {proc.stdout[-300:]}"
    names = sorted({f.split("::", 1)[1].split("[")[0] for f in failed})
    return f"{len(failed)} failed: " + ", ".join(names)


def main(keys: list[str]) -> int:
    chosen = [p for p in PLANTS if not keys or p.key in keys]
    print("| plant | wrong answer | tests that fail |")
    print("|---|---|---|")
    survived = 0
    for plant in chosen:
        result = run_plant(plant)
        survived += not result[0].isdigit()
        print(f"| {plant.key} | {plant.what} | {result} |", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
