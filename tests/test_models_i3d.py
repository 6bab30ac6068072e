"""The pretrained I3D: real DeepMind weights from the cache, checked against the JAX reference.

Needs ``motion-relevance weights fetch i3d-kinetics400`` (``make test`` runs it first).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_relevance.errors import WeightsError
from motion_relevance.models import load_model
from motion_relevance.models import weights as wts

NAME = "i3d-kinetics400"
FIXTURE = Path(__file__).parent / "fixtures" / "i3d_kinetics400_logits.json"

pytestmark = [
    pytest.mark.weights,
    pytest.mark.skipif(
        not wts.is_cached(NAME),
        reason=f"I3D weights not in the cache ({wts.HOME_ENV}); run `motion-relevance weights fetch {NAME}`",
    ),
]


def fixed_input(t: int = 16, h: int = 224, w: int = 224) -> torch.Tensor:
    """The fixture's input: a multiplicative hash of the flat index (channels-last, as the JAX
    reference saw it), scaled to [-1, 1), returned as (1, 3, T, H, W)."""
    n = np.arange(t * h * w * 3, dtype=np.uint64)
    v = ((n * np.uint64(2654435761)) % np.uint64(2**32)).astype(np.float64) / 2**31 - 1.0
    x = torch.from_numpy(v.astype(np.float32).reshape(1, t, h, w, 3))
    return x.permute(0, 4, 1, 2, 3).contiguous()


@pytest.fixture(scope="module")
def i3d() -> tuple[torch.nn.Module, object]:
    return load_model(NAME)


def test_port_matches_the_jax_reference_logits(i3d: tuple) -> None:
    model, spec = i3d
    reference = np.asarray(json.loads(FIXTURE.read_text())["logits"], dtype=np.float32)
    with torch.no_grad():
        logits = model(fixed_input())[0].numpy()
    assert logits.shape == reference.shape == (400,)
    np.testing.assert_allclose(logits, reference, atol=2e-4, rtol=0)
    assert list(np.argsort(-logits)[:5]) == list(np.argsort(-reference)[:5])
    assert spec.labels is not None and len(spec.labels) == 400


def test_preprocessed_frames_run_through_the_real_model(i3d: tuple) -> None:
    """Random pixels through the real model: logits finite and the spec's clip shape."""
    model, spec = i3d
    frames = np.random.default_rng(0).integers(0, 256, size=(9, 120, 160, 3), dtype=np.uint8)
    clip = spec.preprocess(frames)
    assert clip.shape == (1, 3, 9, 224, 224)
    with torch.no_grad():
        logits = model(clip)
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()


def test_fetch_is_idempotent_and_verify_passes() -> None:
    path = wts.verify(NAME)
    mtime = path.stat().st_mtime_ns
    assert wts.fetch(NAME) == path
    assert path.stat().st_mtime_ns == mtime  # not converted again


def test_pretrained_body_with_a_new_classifier() -> None:
    model, spec = load_model(NAME, num_classes=3)
    assert spec.labels is None and model.Logits.out_channels == 3
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 9, 64, 64)).shape == (1, 3)


def test_corrupted_copy_of_the_real_weights_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = wts.cache_path(NAME)
    monkeypatch.setenv(wts.HOME_ENV, str(tmp_path))
    target = wts.cache_path(NAME)
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    assert wts.verify(NAME) == target
    with open(target, "r+b") as fh:  # flip one byte of the last tensor
        fh.seek(-3, os.SEEK_END)
        byte = fh.read(1)
        fh.seek(-3, os.SEEK_END)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsError, match="corrupt"):
        load_model(NAME)


def test_weights_file_of_the_real_model_loads_as_user_weights() -> None:
    model, spec = load_model(NAME, weights=wts.cache_path(NAME))
    assert spec.num_classes == 400
    reference, _ = load_model(NAME)
    for (k, a), (_, b) in zip(
        model.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
