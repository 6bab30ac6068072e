"""How flat the explanation of a frozen clip is, per setting (docs/evidence.md, the two remedies).

    python benchmarks/edge_flatness.py synthetic [METHODS]     # synthetic-motion, 8 frozen clips
    python benchmarks/edge_flatness.py i3d [N_CLIPS] [K,K]      # I3D, frozen example-clip frames

``E_t = sum |R[:, :, t]|`` per frame; flatness = ``max_t |E_t - mean E| / mean E`` (0 = flat),
for the default explanation, ``ties="shared"``, ``context_frames=k`` and both; "ignoreK" is the
default explanation's flatness over frames K..T-1-K (dropping edge frames instead). One JSON
line per method and setting.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import torch

import motion_relevance as mr


def flatness(relevance: torch.Tensor, lo: int = 0, hi: int | None = None) -> list[float]:
    e = relevance.abs().sum(dim=(1, 3, 4))[:, lo:hi]
    m = e.mean(dim=1, keepdim=True)
    return ((e - m).abs().amax(dim=1) / m.squeeze(1)).tolist()


def run(model, spec, frozen: torch.Tensor, method: str, ks: list[int], options: dict) -> None:
    t = frozen.shape[2]
    settings = [("default", "first", 0), ("ties", "shared", 0)]
    settings += [(f"{name}{k}", ties, k) for k in ks for name, ties in (("context", "first"), ("both", "shared"))]
    for name, ties, k in settings:
        r = mr.explain(model, frozen, method, spec=spec, ties=ties, context_frames=k, **options).relevance
        row = {"method": method, "setting": name, "flatness": flatness(r),
               "motion_share": mr.selective_relevance(r).motion_share.tolist(),
               "motion_score": mr.selective_relevance(r).motion_score.tolist()}
        if name == "default":
            row.update({f"ignore{j}": flatness(r, j, t - j) for j in (2, 4)})
        print(json.dumps(row), flush=True)


def main(argv: list[str]) -> None:
    torch.set_num_threads(2)
    which = argv[0] if argv else "synthetic"
    if which == "synthetic":
        from motion_relevance.synthetic import generate

        model, spec = mr.load_model("synthetic-motion")
        spec = dataclasses.replace(spec, min_frames=4)  # SyntheticC3D takes any length >= 4
        clips = torch.cat([spec.preprocess(f) for f in generate("motion", 8, seed=11).frames])
        frozen = clips[:, :, :1].expand(-1, -1, clips.shape[2], -1, -1).contiguous()
        methods = {"saliency": {}, "guided_backprop": {}, "input_x_gradient": {},
                   "integrated_gradients": {"n_steps": 16}, "lrp_epsilon_plus_flat": {}, "gradcam": {}}
        only = argv[1].split(",") if len(argv) > 1 else list(methods)
        for method in only:
            run(model, spec, frozen, method, [4, 8, 16], methods.get(method, {}))
    elif which == "i3d":
        model, spec = mr.load_model("i3d-kinetics400")
        frames = mr.read_video("examples/big_buck_bunny_stretch.mp4").frames
        n = int(argv[1]) if len(argv) > 1 else 1
        starts = np.linspace(0, len(frames) - 16, n).astype(int)
        clips = torch.cat([spec.preprocess(frames[s : s + 16]) for s in starts])
        frozen = clips[:, :, :1].expand(-1, -1, 16, -1, -1).contiguous()
        ks = [int(v) for v in argv[2].split(",")] if len(argv) > 2 else [8]
        run(model, spec, frozen, "saliency", ks, {})
    else:
        sys.exit("error: first argument must be 'synthetic' or 'i3d'")


if __name__ == "__main__":
    main(sys.argv[1:])
