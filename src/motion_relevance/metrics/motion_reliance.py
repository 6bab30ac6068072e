"""Motion reliance measured by intervention: how much of a model's evidence for its target
depends on the temporal order of the frames.

The target's evidence is its log-odds, ``e(x) = z_y - logsumexp_{k != y} z_k`` (``z``: logits).
Averaging ``e`` over every permutation of the frames gives the part of the evidence that a
bag of frames carries (it cannot depend on order); the rest depends on order. Against an
uninformative reference clip ``r`` (by default all zeros: the normalisation mean, a grey clip):

    order      M = e(x) - mean_pi e(pi x)       (pi: K uniformly random frame permutations)
    appearance A = mean_pi e(pi x) - e(r)
    score        = M+ / (M+ + A+)               (+: clipped at 0; 0 when both are 0)

so the score is exactly 0 for any model whose output does not depend on frame order (``M = 0``),
1 when all the evidence above the reference comes from the order, and it needs forward passes
only. ``ci`` is a percentile bootstrap over the K permutations (Monte Carlo uncertainty of the
permutation mean, not uncertainty over clips). Effects of further interventions are reported
beside it, in units of the clip's total evidence ``M+ + A+``: block shuffles (blocks of 2, 4, 8
frames keep the order inside each block: a dose-response, short-range motion survives large
blocks), reversal, and freezing (the middle frame repeated; unlike the others it changes which
frames are seen, so it is not part of the score). Known failure modes (``docs/evidence.md``):
shuffled clips are out of the training distribution, so a drop can also be a reaction to the
jumps themselves; and a model whose evidence comes from the absence of motion reads as
order-dependent too (it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from motion_relevance.errors import InvalidInputError

#: Block lengths of the block-shuffle interventions (frames kept in order inside a block).
BLOCKS: tuple[int, ...] = (2, 4, 8)
#: Random orders drawn per block length.
BLOCK_SAMPLES = 2
#: Relative float tolerance below which the order and appearance parts count as 0: float32
#: forward passes of a permuted clip differ from the clip's by summation order alone.
TOLERANCE = 1e-4
#: Bootstrap resamples of the permutations for ``ci``.
RESAMPLES = 1000


@dataclass(frozen=True)
class MotionReliance:
    """Per clip: the order-dependent share of the target's evidence and what it is made of."""

    score: torch.Tensor
    """(N,) in [0, 1]: share of the target's evidence (above the reference) that depends on the
    frames' temporal order; NaN where the model's logits are not finite."""
    ci: torch.Tensor
    """(N, 2): 95 % percentile bootstrap interval of ``score`` over the random permutations."""
    target: torch.Tensor
    """(N,) int64: the class whose evidence is measured."""
    evidence: torch.Tensor
    """(N,) log-odds of the target on the clips."""
    reference: torch.Tensor
    """(N,) log-odds of the target on the reference clip."""
    permuted: torch.Tensor = field(repr=False)
    """(N, K) log-odds of the target under each random permutation."""
    effects: dict[str, torch.Tensor] = field(repr=False)
    """Intervention name -> (N,) evidence lost, in units of ``M+ + A+`` (NaN where that is 0
    or the clip is too short for the intervention): "permutation", "block-2", "block-4",
    "block-8", "reversal", "freeze"."""


def _log_odds(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    z = logits.double()
    y = z.gather(1, target[:, None])[:, 0]
    others = z.scatter(1, target[:, None], float("-inf"))
    return y - torch.logsumexp(others, dim=1)


def _block_order(frames: int, block: int, generator: torch.Generator) -> torch.Tensor:
    starts = list(range(0, frames, block))
    order = torch.randperm(len(starts), generator=generator).tolist()
    return torch.cat([torch.arange(starts[i], min(starts[i] + block, frames)) for i in order])


def _orders(frames: int, permutations: int, generator: torch.Generator) -> dict[str, list[torch.Tensor]]:
    """Frame index orders of every intervention (``freeze``: the middle frame repeated)."""
    orders = {"permutation": [torch.randperm(frames, generator=generator) for _ in range(permutations)]}
    for block in BLOCKS:
        orders[f"block-{block}"] = (
            [_block_order(frames, block, generator) for _ in range(BLOCK_SAMPLES)] if frames > block else []
        )
    orders["reversal"] = [torch.arange(frames - 1, -1, -1)]
    orders["freeze"] = [torch.full((frames,), frames // 2, dtype=torch.long)]
    return orders


def _check(model: nn.Module, clips: torch.Tensor, target: int | torch.Tensor | None,
           permutations: int, batch_size: int, reference: torch.Tensor | None) -> None:
    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(clips, torch.Tensor) or clips.ndim != 5 or not clips.is_floating_point():
        raise InvalidInputError("clips must be a float tensor (N, C, T, H, W), e.g. from spec.preprocess(frames)")
    if clips.shape[0] < 1 or clips.shape[2] < 2:
        raise InvalidInputError(f"motion reliance needs at least one clip of 2 or more frames, got shape {tuple(clips.shape)}")
    for name, value, low in (("permutations", permutations, 2), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidInputError(f"{name} must be an integer >= {low}, got {value!r}")
    if reference is not None and (not isinstance(reference, torch.Tensor) or reference.shape not in (clips.shape, clips.shape[1:])):
        raise InvalidInputError(
            f"reference must be a tensor shaped like one clip {tuple(clips.shape[1:])} or like the clips"
        )
    if isinstance(target, torch.Tensor) and target.shape not in ((), (clips.shape[0],)):
        raise InvalidInputError(f"target must be one class index or one per clip ({clips.shape[0]}), got shape {tuple(target.shape)}")


@torch.no_grad()
def motion_reliance(
    model: nn.Module,
    clips: torch.Tensor,
    *,
    target: int | torch.Tensor | None = None,
    permutations: int = 16,
    seed: int = 0,
    batch_size: int = 16,
    reference: torch.Tensor | None = None,
) -> MotionReliance:
    """How much ``model``'s evidence for ``target`` (default: its predicted class) on each of
    ``clips`` (N, C, T, H, W) depends on the frames' order, from forward passes under frame
    interventions (see the module docstring). Deterministic for a ``seed``; runs where
    ``clips`` are (the model must be there too)."""
    _check(model, clips, target, permutations, batch_size, reference)
    n, frames = clips.shape[0], clips.shape[2]

    def logits_of(x: torch.Tensor) -> torch.Tensor:
        out = [model(x[i : i + batch_size]).detach() for i in range(0, x.shape[0], batch_size)]
        logits = torch.cat(out)
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise InvalidInputError(f"the model must return (N, classes) logits with 2 or more classes, got shape {tuple(logits.shape)}")
        return logits

    logits = logits_of(clips)
    if target is None:
        y = logits.argmax(dim=1)
    else:
        y = torch.as_tensor(target, dtype=torch.long, device=logits.device).expand(n).clone()
        if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
            raise InvalidInputError(f"target must be a class index in 0..{logits.shape[1] - 1}, got {target!r}")
    evidence = _log_odds(logits, y)
    ref = torch.zeros_like(clips) if reference is None else reference.to(clips).expand_as(clips)
    ref_evidence = _log_odds(logits_of(ref), y)

    generator = torch.Generator().manual_seed(seed)
    orders = _orders(frames, permutations, generator)
    under: dict[str, torch.Tensor] = {}
    for name, kind in orders.items():
        if not kind:
            continue
        index = torch.stack(kind).to(clips.device)  # (S, T)
        jobs = [(i, s) for i in range(n) for s in range(len(kind))]
        out = []
        for start in range(0, len(jobs), batch_size):  # gathered per batch: memory of one batch
            chunk = jobs[start : start + batch_size]
            batch = torch.stack([clips[i][:, index[s]] for i, s in chunk])
            out.append(_log_odds(logits_of(batch), y[[i for i, _ in chunk]]))
        under[name] = torch.cat(out).reshape(n, len(kind))

    permuted = under["permutation"]
    tol = TOLERANCE * (1.0 + evidence.abs() + ref_evidence.abs())

    def score_of(mean_permuted: torch.Tensor) -> torch.Tensor:
        order = evidence - mean_permuted
        appearance = mean_permuted - ref_evidence
        order = torch.where(order > tol, order, torch.zeros_like(order))
        appearance = torch.where(appearance > tol, appearance, torch.zeros_like(appearance))
        total = order + appearance
        return torch.where(total > 0, order / total.clamp_min(1e-300), torch.zeros_like(total))

    score = score_of(permuted.mean(dim=1))
    picks = torch.randint(0, permutations, (RESAMPLES, permutations), generator=generator).to(permuted.device)
    boot = torch.stack([score_of(permuted[:, p].mean(dim=1)) for p in picks], dim=1)  # (N, B)
    ci = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=boot.dtype, device=boot.device), dim=1).T
    # non-finite logits measure nothing: NaN, not a reading of "order ignored"
    finite = torch.isfinite(evidence) & torch.isfinite(ref_evidence) & torch.isfinite(permuted).all(dim=1)
    score = torch.where(finite, score, torch.full_like(score, float("nan")))
    ci = torch.where(finite[:, None], ci, torch.full_like(ci, float("nan")))

    mean_permuted = permuted.mean(dim=1)
    total = (evidence - mean_permuted).clamp_min(0) + (mean_permuted - ref_evidence).clamp_min(0)
    effects = {}
    for name in orders:
        lost = evidence - under[name].mean(dim=1) if name in under else torch.full_like(evidence, float("nan"))
        effects[name] = torch.where(total > tol, lost / total.clamp_min(1e-300), torch.full_like(total, float("nan"))).float().cpu()
    return MotionReliance(
        score=score.float().cpu(),
        ci=ci.float().cpu(),
        target=y.cpu(),
        evidence=evidence.float().cpu(),
        reference=ref_evidence.float().cpu(),
        permuted=permuted.float().cpu(),
        effects=effects,
    )


__all__ = ["BLOCKS", "MotionReliance", "motion_reliance"]
