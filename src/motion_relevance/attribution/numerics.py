"""Numerics of an explanation: the model's precision (float32 or bfloat16 autocast) and TF32.

``numerics(device, precision, tf32)`` is the context every method runs in. With ``tf32=False``
(the default) float32 convolutions and matrix products run in full IEEE precision on the GPU
while the method runs, and PyTorch's own settings are restored afterwards: TF32 (cuDNN's
default for convolutions) moves an I3D saliency map by about 7 % relative L2 against the CPU.
``precision="bfloat16"`` runs the model under ``torch.autocast``; the gradients that reach the
clip, the relevance and everything after it stay float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from motion_relevance.errors import InvalidInputError

#: Accepted precisions; "bf16" is an alias of "bfloat16".
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
_ALIASES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def check_precision(precision: object) -> str:
    """The canonical name of ``precision`` ("float32" or "bfloat16"; "fp32"/"bf16" accepted)."""
    name = _ALIASES.get(precision) if isinstance(precision, str) else None
    if name is None:
        raise InvalidInputError(f"precision must be float32 or bf16 (bfloat16), got {precision!r}")
    return name


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """Full-precision float32 convolutions and matrix products (no TF32) inside the block."""
    settings = (torch.backends.cudnn.conv, torch.backends.cuda.matmul)
    saved = [s.fp32_precision for s in settings]
    try:
        for s in settings:
            s.fp32_precision = "ieee"
        yield
    finally:
        for s, value in zip(settings, saved, strict=True):
            s.fp32_precision = value


@contextlib.contextmanager
def numerics(device: torch.device, precision: str = "float32", tf32: bool = False) -> Iterator[None]:
    """Run the body with ``precision`` (autocast for bfloat16) and TF32 off unless ``tf32``."""
    with contextlib.ExitStack() as stack:
        if not tf32:
            stack.enter_context(ieee_float32())
        if check_precision(precision) == "bfloat16":
            stack.enter_context(torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        yield


__all__ = ["PRECISIONS", "check_precision", "ieee_float32", "numerics"]
