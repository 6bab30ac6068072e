"""Train the reference model of one synthetic variant (deterministic, CPU, a few minutes).

    python scripts/train_synthetic.py --variant motion

writes ``src/motion_relevance/models/trained/synthetic-motion.safetensors`` and prints its
sha256 (to record in ``models/synthetic_presets.py``), test accuracy and frozen-clip accuracy.
Every training batch is freshly generated (clip indices ``step * batch ...``), so the data never
repeats and the run depends only on the seed, the step count and the thread count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from motion_relevance.errors import InvalidInputError, MotionRelevanceError, OutputError
from motion_relevance.metrics.frozen import frozen_accuracy
from motion_relevance.models.synthetic_presets import SyntheticC3D, synthetic_spec
from motion_relevance.synthetic.generator import VARIANTS, generate

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "motion_relevance" / "models" / "trained"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on."""

    variant: str
    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    test_clips: int = 512


@dataclass(frozen=True)
class TrainResult:
    """What a run produced and how good it is (accuracies on held-out ``test`` clips)."""

    path: str
    sha256: str
    size_bytes: int
    test_accuracy: float
    frozen_accuracy: float
    in_distribution_accuracy: float
    in_distribution_frozen_accuracy: float
    final_loss: float
    seconds: float


def _lr(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to zero."""
    warm = max(1, cfg.steps // 20)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * (step - warm) / max(1, cfg.steps - warm)))


def _evaluate(model: torch.nn.Module, variant: str, n: int, seed: int, cue_agreement: float | None) -> tuple[float, float]:
    spec = synthetic_spec(f"synthetic-{variant}")
    accs, faccs, total = 0.0, 0.0, 0
    for start in range(0, n, 128):
        batch = generate(variant, min(128, n - start), split="test", seed=seed, start=start,
                         cue_agreement=cue_agreement)
        clips = spec.preprocess(batch.frames)
        res = frozen_accuracy(model, clips, torch.from_numpy(batch.labels), num_classes=4)
        accs += res.accuracy * res.n
        faccs += res.frozen_accuracy * res.n
        total += res.n
    return accs / total, faccs / total


def train(cfg: TrainConfig, out: Path | str | None = None, *, progress: bool = False) -> TrainResult:
    """Train ``SyntheticC3D`` on ``cfg.variant`` and save it as safetensors under ``out``."""
    from safetensors.torch import save

    if cfg.variant not in VARIANTS:
        raise InvalidInputError(f"unknown variant {cfg.variant!r}; choose one of {', '.join(VARIANTS)}")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise InvalidInputError("steps and batch size must be >= 1")
    name = f"synthetic-{cfg.variant}"
    out_path = Path(out) if out is not None else DEFAULT_OUT_DIR / f"{name}.safetensors"
    if out_path.suffix != ".safetensors":
        out_path = out_path / f"{name}.safetensors"

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    spec = synthetic_spec(name)
    model = SyntheticC3D(num_classes=len(spec.labels or ()))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc=f"train {name}", unit="step")
    t0 = time.perf_counter()
    loss_avg = float("nan")
    model.train()
    for step in range(cfg.steps):
        batch = generate(cfg.variant, cfg.batch_size, split="train", seed=cfg.seed,
                         start=step * cfg.batch_size)
        x = spec.preprocess(batch.frames)
        y = torch.from_numpy(batch.labels)
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_avg = loss.item() if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * loss.item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_avg:.3f}")
        elif step % 50 == 0:
            log.info("step %d/%d loss %.4f", step, cfg.steps, loss_avg)
    if bar is not None:
        bar.close()
    model.eval()

    test_acc, test_facc = _evaluate(model, cfg.variant, cfg.test_clips, cfg.seed, None)
    if cfg.variant == "shortcut":  # also on the training distribution (cue agrees 90 %)
        ind_acc, ind_facc = _evaluate(model, cfg.variant, cfg.test_clips, cfg.seed, 0.9)
    else:
        ind_acc, ind_facc = test_acc, test_facc
    seconds = time.perf_counter() - t0

    record = dict(asdict(cfg))
    record.update(
        architecture="SyntheticC3D",
        test_accuracy=round(test_acc, 4),
        frozen_accuracy=round(test_facc, 4),
        # The command as recorded in the shipped weights (the script lived in the package then);
        # kept word for word so that a re-run reproduces those files byte for byte.
        command=f"python -m motion_relevance.synthetic.train --variant {cfg.variant} "
        f"--steps {cfg.steps} --batch-size {cfg.batch_size} --seed {cfg.seed} --threads {cfg.threads}",
    )
    # One metadata key: safetensors does not keep the order of several, which would make the
    # file (and its sha256) differ between identical runs.
    metadata = {"training": json.dumps(record, sort_keys=True)}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    data = save(state, metadata=metadata)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".safetensors.part")
        tmp.write_bytes(data)
        tmp.replace(out_path)
    except OSError as exc:
        raise OutputError(f"cannot write {out_path}: {exc.strerror}; choose another --out") from exc
    return TrainResult(
        path=str(out_path),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        test_accuracy=test_acc,
        frozen_accuracy=test_facc,
        in_distribution_accuracy=ind_acc,
        in_distribution_frozen_accuracy=ind_facc,
        final_loss=loss_avg,
        seconds=seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/train_synthetic.py",
        description="Train the reference model of a synthetic benchmark variant.",
    )
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--out", default=None,
                        help="output .safetensors file or directory (default: the package's models/trained/)")
    defaults = TrainConfig(variant="motion")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--test-clips", type=int, default=defaults.test_clips)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig(variant=args.variant, steps=args.steps, batch_size=args.batch_size,
                      seed=args.seed, threads=args.threads, test_clips=args.test_clips)
    try:
        result = train(cfg, args.out, progress=True)
    except MotionRelevanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
