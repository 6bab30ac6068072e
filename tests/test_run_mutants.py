"""What every method runs on (``attribution/run.py``, ``attribution/numerics.py``): cases the
mutation run of those files found untested (the fixed-target scorer of clips repeated in place,
the logits check, target checks and their messages word for word, ``leaf``).

Expected values are read off a linear model's own logits, indexed by hand.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from motion_relevance.attribution.numerics import check_precision
from motion_relevance.attribution.run import Run, Scorer, check_logits, leaf
from motion_relevance.errors import InvalidInputError

K = 3


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, K)).double()


def run_of(model: nn.Module, requested: tuple[int, ...] | None = None, n: int = 2) -> Run:
    return Run(model=model, spec=None, requested=requested, seed=0, batch_size=1, index=slice(0, n), total=n)


def rows(seed: int, n: int) -> torch.Tensor:
    return torch.rand((n, 1, 6), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- the fixed-target scorer ---------------------------------------------------------------------


def test_fixed_target_scorer_of_one_clip_takes_every_row() -> None:
    model = linear()
    x = rows(2, 3)
    out = Scorer(run_of(model, n=1), select=False, target=torch.tensor([1])).forward(x)
    torch.testing.assert_close(out.detach(), model(x).detach()[:, 1], rtol=0, atol=0)


def test_fixed_target_scorer_refuses_several_clips() -> None:
    """Captum lays out several clips differently per method (IG repeats the batch, SmoothGrad
    each clip in place), so a fixed target of several clips is refused rather than guessed."""
    scorer = Scorer(run_of(linear()), select=False, target=torch.tensor([0, 2]))
    for n in (2, 4):
        with pytest.raises(RuntimeError) as info:
            scorer.forward(rows(n, 3))
        assert str(info.value) == "a fixed-target scorer explains one clip at a time"


# -- the selecting scorer -------------------------------------------------------------------------


def test_selecting_scorer_refuses_another_number_of_rows() -> None:
    scorer = Scorer(run_of(linear(), requested=(0, 1)), select=True)
    scorer.forward(rows(4, 2))
    with pytest.raises(RuntimeError) as info:
        scorer.forward(rows(4, 4))
    assert str(info.value) == "a selecting scorer must see one row per clip"


def test_result_of_a_scorer_never_called() -> None:
    with pytest.raises(RuntimeError) as info:
        Scorer(run_of(linear()), select=True).result(torch.zeros(2))
    assert str(info.value) == "the scorer was never called"


# -- targets ------------------------------------------------------------------------------------


def test_target_equal_to_the_number_of_classes_is_out_of_range() -> None:
    with pytest.raises(InvalidInputError) as info:
        run_of(linear(), requested=(1, K)).resolve_target(torch.zeros(2, K))
    assert str(info.value) == "target 3 is out of range for a model with 3 classes (0..2)"


def test_first_bad_target_is_named() -> None:
    with pytest.raises(InvalidInputError) as info:
        run_of(linear(), requested=(5, 7)).resolve_target(torch.zeros(2, K))
    assert str(info.value) == "target 5 is out of range for a model with 3 classes (0..2)"


def test_target_and_logits_of_different_lengths() -> None:
    with pytest.raises(RuntimeError) as info:
        run_of(linear(), requested=(0, 1)).resolve_target(torch.zeros(3, K))
    assert str(info.value) == "target and logits disagree on the number of clips"


def test_requested_targets_are_int64() -> None:
    target = run_of(linear(), requested=(2, 0)).resolve_target(torch.zeros(2, K))
    assert target.dtype == torch.int64
    assert target.tolist() == [2, 0]


# -- the logits check -------------------------------------------------------------------------------


def test_logits_that_are_not_a_tensor() -> None:
    with pytest.raises(InvalidInputError) as info:
        check_logits((torch.zeros(2, K),), 2)
    assert str(info.value) == (
        "the model must return a tensor of logits (N, K), got tuple; wrap it in a module that returns the logits"
    )


@pytest.mark.parametrize("shape", [(2, K, 1), (3, K), (2,)])
def test_logits_of_the_wrong_shape(shape: tuple[int, ...]) -> None:
    """Three axes with the right rows, two axes with the wrong rows, one axis."""
    with pytest.raises(InvalidInputError) as info:
        check_logits(torch.zeros(shape), 2)
    assert str(info.value) == (
        f"the model must map clips (N, C, T, H, W) to logits (N, K); for 2 clips it returned shape {shape}"
    )


def test_logits_of_the_right_shape_pass_unchanged() -> None:
    logits = torch.zeros(2, K)
    assert check_logits(logits, 2) is logits


# -- leaf and precision -----------------------------------------------------------------------------


def test_leaf_is_a_fresh_leaf_that_requires_grad() -> None:
    w = torch.tensor(2.0, requires_grad=True)
    x = torch.arange(3.0) * w  # part of a graph
    y = leaf(x)
    assert y.requires_grad and y.is_leaf and y.grad_fn is None
    assert y.tolist() == [0.0, 2.0, 4.0]
    (y * y).sum().backward()
    assert y.grad.tolist() == [0.0, 4.0, 8.0]
    assert w.grad is None  # nothing flows back into x's graph


def test_precision_that_is_not_hashable_is_a_one_line_error() -> None:
    with pytest.raises(InvalidInputError) as info:
        check_precision(["bf16"])
    assert str(info.value) == "precision must be float32 or bf16 (bfloat16), got ['bf16']"
