"""Train the graded-reliance reference models: one small C3D per (motion level, seed).

    python scripts/train_graded.py --level 50 --seed 1 --steps 400 --threads 1   (the shipped family)

Every clip of the ``shortcut`` benchmark carries two label cues, the moving object's direction
and a static colour patch. A model of level ``L`` (percent) trains on clips where, independently
per clip, with probability ``L/100`` the *motion* carries the label (the cue colour is random),
and otherwise the *cue* carries it (the direction is random). Level 0 can only use the colour
patch, level 100 only motion; levels in between use both. How much each trained model relies on
motion is then measured by intervention on held-out clips where both cues agree
(``motion_relevance.metrics.reliance``), never assumed from the level.

Deterministic: the weights depend only on level, seed, steps, batch size and the thread count.
Writes ``src/motion_relevance/models/trained/graded/synthetic-graded-L-sS.safetensors`` and
prints a JSON record with its sha256 (recorded in ``models/synthetic_presets.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from motion_relevance.metrics.reliance import intervention_reliance
from motion_relevance.models.synthetic_presets import (
    GRADED_FRAMES,
    GRADED_LEVELS,
    GRADED_SIZE,
    GRADED_WIDTHS,
    SyntheticC3D,
    graded_name,
    graded_spec,
)
from motion_relevance.synthetic.generator import generate, intervention_clips

OUT_DIR = Path(__file__).resolve().parents[1] / "src" / "motion_relevance" / "models" / "trained" / "graded"


def _lr(step: int, steps: int, lr: float) -> float:
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    return 0.5 * lr * (1.0 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def training_batch(level: int, seed: int, step: int, batch: int):
    """The clips of one step: per clip, motion or the cue carries the label."""
    rng = np.random.default_rng([seed, level, step])
    motion_clip = rng.random(batch) < level / 100.0
    return generate(
        "shortcut", batch, split="train", seed=seed, start=step * batch,
        frames=GRADED_FRAMES, size=GRADED_SIZE,
        motion_agreement=np.where(motion_clip, 1.0, 0.25),
        cue_agreement=np.where(motion_clip, 0.25, 1.0),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, required=True, choices=range(101), metavar="0-100",
                        help=f"motion level in percent (the shipped family: {GRADED_LEVELS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    from safetensors.torch import save

    torch.set_num_threads(args.threads)
    torch.manual_seed(1000 * args.level + args.seed)
    name = graded_name(args.level, args.seed)
    spec = graded_spec(graded_name(GRADED_LEVELS[0], 0))  # the same input spec for every level and seed
    model = SyntheticC3D(num_classes=4, widths=GRADED_WIDTHS)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    t0 = time.perf_counter()
    model.train()
    avg = float("nan")
    for step in range(args.steps):
        b = training_batch(args.level, args.seed, step, args.batch_size)
        for g in opt.param_groups:
            g["lr"] = _lr(step, args.steps, args.lr)
        loss = F.cross_entropy(model(spec.preprocess(b.frames)), torch.from_numpy(b.labels))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        avg = loss.item() if math.isnan(avg) else 0.95 * avg + 0.05 * loss.item()
        if step % 50 == 0:
            print(f"{name} step {step}/{args.steps} loss {avg:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    model.eval()
    train_seconds = time.perf_counter() - t0
    iv = intervention_clips(256, split="val", seed=args.seed, frames=GRADED_FRAMES,
                            size=GRADED_SIZE)
    rel = intervention_reliance(model, *(spec.preprocess(b.frames) for b in
                                         (iv.agree, iv.motion_wrong, iv.cue_wrong)),
                                torch.from_numpy(iv.agree.labels))
    record = {
        "name": name, "level": args.level, "seed": args.seed, "steps": args.steps,
        "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads,
        "widths": list(GRADED_WIDTHS), "final_loss": round(avg, 4),
        "val_accuracy_agree": round(rel.accuracy, 4),
        "val_reliance": round(rel.reliance, 4),
        "val_p_true": [round(v, 4) for v in (rel.p_agree, rel.p_motion_wrong, rel.p_cue_wrong)],
        "command": f"python scripts/train_graded.py --level {args.level} --seed {args.seed} "
        f"--steps {args.steps} --batch-size {args.batch_size} --threads {args.threads}",
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    data = save(state, metadata={"training": json.dumps(record, sort_keys=True)})
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.safetensors"
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    record.update(path=str(path), sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                  train_seconds=round(train_seconds, 1))
    print(json.dumps(record, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
