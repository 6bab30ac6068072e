"""Motion reliance of a real model on real clips, per window, with the model's own backbone made
order-invariant as the negative control.

The control is ``f(x) = mean_t g(freeze_t(x))``: every frame of the clip frozen into a clip of its
own, the model's logits averaged. It sees each frame's appearance through the real network, but
its output cannot depend on the frames' order, so its reliance is 0; if the interventions read
clearly above 0 on it, their drops are an out-of-distribution reaction to shuffled clips rather
than lost motion. Each frame's logits are computed once and kept (a frame's frozen clip does not
change when the frames are permuted), so the control costs one pass per distinct frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from motion_relevance.attribution import explain
from motion_relevance.evidence.benchmark import input_change_mask, model_view, share_on
from motion_relevance.metrics.motion_reliance import motion_reliance
from motion_relevance.models.spec import InputSpec
from motion_relevance.motion_score import motion_score
from motion_relevance.runs.progress import ProgressCallback, report
from motion_relevance.selective import selective_relevance
from motion_relevance.video import iter_clips


class OrderInvariant(nn.Module):
    """``mean_t model(freeze_t(x))``: the model's logits on each frame frozen in time, averaged
    (order-invariant by construction). Frames seen before are not passed again."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self._seen: dict[bytes, torch.Tensor] = {}

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for clip in x:
            per_frame = []
            for t in range(clip.shape[1]):
                frame = clip[:, t : t + 1]
                key = hashlib.sha256(frame.detach().cpu().numpy().tobytes()).digest()
                if key not in self._seen:
                    self._seen[key] = self.model(frame.expand_as(clip).unsqueeze(0).contiguous())[0]
                per_frame.append(self._seen[key])
            out.append(torch.stack(per_frame).mean(dim=0))
        return torch.stack(out)


@dataclass(frozen=True)
class RealConfig:
    """What the real-clip run measures."""

    frames: int = 16
    windows_per_video: int = 6
    max_side: int = 256
    permutations: int = 16
    seed: int = 0
    method: str = "saliency"
    """The explanation whose numbers are set beside the reliance (one fwd+bwd per window)."""


@dataclass(frozen=True)
class WindowRow:
    """One window of one video: the model's and the control's reliance, and the explanation's
    motion numbers."""

    video: str
    label: str
    split: str
    window: int
    start_frame: int
    predicted: str
    reliance: float
    reliance_low: float
    reliance_high: float
    control_reliance: float
    control_high: float
    motion_score: float
    motion_share: float
    b0_input_change: float
    input_change: float
    """Fraction of voxels whose pixels change between t-1 and t+1 (how much the input moves)."""
    effects: dict[str, float]


def video_split(name: str) -> str:
    """"val" or "test" from the video's file name alone (sha256; fixed before any number)."""
    return "val" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "test"


def real_windows(
    model: nn.Module,
    spec: InputSpec,
    videos: Sequence[tuple[str, str]],
    config: RealConfig | None = None,
    progress: ProgressCallback | None = None,
) -> list[WindowRow]:
    """Per window of each ``(path, label)`` video: the model's motion reliance, the
    order-invariant control's, and ``config.method``'s motion score, paper share and B0."""
    cfg = config or RealConfig()
    control = OrderInvariant(model).eval()
    rows: list[WindowRow] = []
    for k, (path, label) in enumerate(videos, start=1):
        name = path.rsplit("/", 1)[-1]
        for j, (window, frames) in enumerate(iter_clips(path, cfg.frames, stride=cfg.frames, max_side=cfg.max_side,
                                                        quiet=True)):  # fmt: skip
            if j >= cfg.windows_per_video:
                break
            x = spec.preprocess(frames)
            rel = motion_reliance(model, x, permutations=cfg.permutations, seed=cfg.seed + j)
            ctl = motion_reliance(control, x, target=rel.target, permutations=cfg.permutations, seed=cfg.seed + j)
            expl = explain(model, x, cfg.method, spec=spec, target=rel.target)
            r = expl.relevance.detach()
            changed = input_change_mask(model_view(x, spec))
            rows.append(WindowRow(
                video=name, label=label, split=video_split(name), window=j, start_frame=window.frame_indices[0],
                predicted=(spec.labels[int(rel.target[0])] if spec.labels else str(int(rel.target[0]))),
                reliance=float(rel.score[0]), reliance_low=float(rel.ci[0, 0]), reliance_high=float(rel.ci[0, 1]),
                control_reliance=float(ctl.score[0]), control_high=float(ctl.ci[0, 1]),
                motion_score=float(motion_score(r)[0]), motion_share=float(selective_relevance(r, 1.0).motion_share[0]),
                b0_input_change=float(share_on(r, changed)[0]), input_change=float(changed.float().mean()),
                effects={n: float(v[0]) for n, v in rel.effects.items()},
            ))  # fmt: skip
        report(progress, "videos", k, len(videos))
    return rows


__all__ = ["OrderInvariant", "RealConfig", "WindowRow", "real_windows", "video_split"]
