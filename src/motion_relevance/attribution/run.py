"""What every method needs while it runs: the model guard, the scorer and the target.

``model_guard`` puts the model in the state explanations need (eval mode, parameters frozen)
and restores it afterwards, removing any hook a library left behind, even when a method raises.
The ``Scorer`` wraps the model so that one forward pass yields both the logits of the
unmodified clips and the selected target logit, which keeps single-pass methods at one
forward + backward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from motion_relevance.errors import InvalidInputError
from motion_relevance.models.spec import InputSpec

#: Module attributes that hold hooks, and the side tables keyed by the same hook ids.
_HOOK_TABLES: dict[str, tuple[str, ...]] = {
    "_forward_hooks": ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"),
    "_forward_pre_hooks": ("_forward_pre_hooks_with_kwargs",),
    "_backward_hooks": (),
    "_backward_pre_hooks": (),
}


#: Captum warns on every call that it hooks ReLUs; the hooks are removed by Captum (and by
#: ``model_guard``), so methods silence this warning for our users.
RELU_HOOK_WARNING = "Setting backward hooks on ReLU activations"


def leaf(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a fresh leaf that requires grad (Captum then leaves it be)."""
    return x.detach().requires_grad_(True)


@dataclass(frozen=True)
class Attribution:
    """One method's output for a batch of clips (internal; ``explain`` assembles Explanations)."""

    relevance: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor


@contextlib.contextmanager
def model_guard(model: nn.Module) -> Iterator[None]:
    """Run the body with ``model`` in eval mode and its parameters frozen; restore both, and
    remove hooks added meanwhile, on the way out (also on errors)."""
    modules = list(model.modules())
    training = [(m, m.training) for m in modules]
    requires_grad = [(p, p.requires_grad) for p in model.parameters()]
    hooks = [(m, {table: set(getattr(m, table, {})) for table in _HOOK_TABLES}) for m in modules]
    try:
        model.eval()
        for p, _ in requires_grad:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in requires_grad:
            p.requires_grad_(flag)
        for m, flag in training:
            m.training = flag
        for m, before in hooks:
            for table, side_tables in _HOOK_TABLES.items():
                current = getattr(m, table, None)
                if current is None:
                    continue
                for key in set(current) - before[table]:
                    del current[key]
                    for side in side_tables:
                        getattr(m, side, {}).pop(key, None)


def check_logits(output: object, rows: int) -> torch.Tensor:
    """The model's output must be ``(rows, K)`` logits."""
    if not isinstance(output, torch.Tensor):
        raise InvalidInputError(
            f"the model must return a tensor of logits (N, K), got {type(output).__name__}; "
            "wrap it in a module that returns the logits"
        )
    if output.ndim != 2 or output.shape[0] != rows:
        raise InvalidInputError(
            f"the model must map clips (N, C, T, H, W) to logits (N, K); for {rows} clips it "
            f"returned shape {tuple(output.shape)}"
        )
    return output


class Scorer(nn.Module):
    """The model, checked to return ``(N, K)`` logits; with ``select=True`` it returns the
    target's logit ``(N, 1)`` instead and records the logits of its first call. With a fixed
    ``target`` (one clip's class, from ``Run.plain_forward``) it returns that class's logit
    ``(rows,)`` for every row, so multi-pass methods whose internal batches repeat one clip need no
    ``target`` argument (Captum reads a one-element target back to the host on every batch)."""

    def __init__(self, run: Run, select: bool, target: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = run.model
        self._run = run
        self.select = select
        self.fixed = target
        self.logits: torch.Tensor | None = None
        self.target: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = check_logits(self.model(x), x.shape[0])
        if self.fixed is not None:
            # one clip only: Captum lays out several clips differently per method (SmoothGrad
            # repeats each clip in place, IG and occlusion the whole batch), so rows of several
            # clips could not be matched to their targets here; explain runs these methods clip
            # by clip
            if self.fixed.shape[0] != 1:
                raise RuntimeError("a fixed-target scorer explains one clip at a time")
            return out.gather(1, self.fixed.expand(out.shape[0])[:, None])[:, 0]
        if not self.select:
            return out
        if self.target is None:  # first call: the unmodified clips
            self.logits = out.detach()
            self.target = self._run.resolve_target(self.logits)
        if out.shape[0] != self.target.shape[0]:
            raise RuntimeError("a selecting scorer must see one row per clip")
        return out.gather(1, self.target[:, None])

    def result(self, relevance: torch.Tensor) -> Attribution:
        if self.logits is None or self.target is None:
            raise RuntimeError("the scorer was never called")
        return Attribution(relevance, self.logits, self.target)


@dataclass
class Run:
    """One method call on a chunk of clips: model, spec, requested target and settings."""

    model: nn.Module
    spec: InputSpec | None
    requested: tuple[int, ...] | None
    """The class per clip of this chunk (host ints), or None for the argmax."""
    seed: int
    batch_size: int
    """Most clip passes per forward for multi-pass methods."""
    index: slice
    """Which clips of the ``explain`` call this chunk holds."""
    total: int
    """Number of clips in the ``explain`` call."""

    def resolve_target(self, logits: torch.Tensor) -> torch.Tensor:
        """The requested target (checked against ``K``) or the argmax of ``logits``."""
        k = logits.shape[1]
        if self.requested is None:
            return logits.argmax(dim=1)
        if len(self.requested) != logits.shape[0]:
            raise RuntimeError("target and logits disagree on the number of clips")
        bad = [t for t in self.requested if not 0 <= t < k]  # host values: no device sync
        if bad:
            raise InvalidInputError(f"target {bad[0]} is out of range for a model with {k} classes (0..{k - 1})")
        return torch.tensor(self.requested, dtype=torch.int64, device=logits.device)

    def scorer(self, select: bool, target: torch.Tensor | None = None) -> Scorer:
        """The model as a scorer: all logits, the selected target's (``select``), or the
        logit of a fixed ``target`` per clip."""
        return Scorer(self, select, target)

    def plain_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the unmodified clips (no graph) and the resolved target."""
        with torch.no_grad():
            logits = check_logits(self.model(x), x.shape[0]).detach()
        return logits, self.resolve_target(logits)
