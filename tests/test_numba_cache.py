"""Numba's compiled kernels are cached (issue 25): start-up after the first run skips
compiling, also when the package is installed where its user cannot write.

Numba writes its cache next to the source (``__pycache__``) when it can, else in the
user's cache folder (``~/.cache/numba``), or in ``NUMBA_CACHE_DIR`` when that is set.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import pytest

import stemboard
from stemboard.dsp import kernels

RUN = """
import hashlib, sys
import numpy as np
import stemboard
x = np.random.default_rng(0).standard_normal((2, 22050)).astype(np.float32) * 0.1
stems = stemboard.StemSeparator(sys.argv[1]).separate(x, 44100)
print("stems", stemboard.__file__,
      hashlib.sha256(b"".join(stems[s].tobytes() for s in sorted(stems))).hexdigest())
"""


def test_every_kernel_is_compiled_with_cache():
    dispatchers = [v for v in vars(kernels).values() if isinstance(v, numba.core.dispatcher.
                                                                   Dispatcher)]
    assert len(dispatchers) >= 5
    uncached = [d.py_func.__name__ for d in dispatchers
                if type(d._cache).__name__ == "NullCache"]
    assert uncached == []


def _copy_package(dest):
    """An install-shaped copy of the package (no caches; the weights linked, not copied).

    Each subpackage is copied from wherever it is imported from: an editable install
    maps the checkout's top-level folders (dsp/, models/, ...) into ``stemboard`` from
    outside ``stemboard/``, and a copy without them would import the originals.
    """
    import importlib

    ignore = shutil.ignore_patterns("__pycache__", "weights", "*.nb[ic]")
    pkg = dest / "stemboard"
    shutil.copytree(Path(stemboard.__file__).parent, pkg, symlinks=False, ignore=ignore)
    for name in ("dsp", "models", "presets", "plugin"):
        if not (pkg / name).exists():
            src = Path(importlib.import_module(f"stemboard.{name}").__file__).parent
            shutil.copytree(src, pkg / name, symlinks=False, ignore=ignore)
    weights = Path(importlib.import_module("stemboard.models").__file__).parent / "weights"
    if weights.exists():
        (pkg / "models" / "weights").symlink_to(weights.resolve())
    return pkg


def _read_only_runner(root):
    """A command prefix that runs with ``root`` read-only, or None when that is impossible.

    As root, permissions do not stop writes; a read-only bind mount in a user
    namespace (``unshare``) does. Others get the copy's write bits removed.
    """
    if os.geteuid() != 0:
        for p in [root, *root.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        return None
    mount = (f"mount --bind {root} {root} && mount -o remount,bind,ro {root} && "
             f"! touch {root}/probe 2>/dev/null && exec \"$@\"")
    prefix = ["unshare", "-rm", "sh", "-c", mount, "sh"]
    probe = subprocess.run(prefix + ["true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_kernels_cache_in_the_user_folder_when_the_package_is_read_only(tmp_path, model_path):
    root = tmp_path / "site"
    root.mkdir()
    pkg = _copy_package(root)
    prefix = _read_only_runner(root)
    if prefix is None:
        pytest.skip("cannot make a folder read-only here (root without a usable unshare)")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(HOME=str(home), PYTHONPATH=str(root), NUMBA_DEBUG_CACHE="1")

    def run():
        done = subprocess.run(prefix + [sys.executable, "-c", RUN, model_path], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()
        return ([line for line in lines if line.startswith("[cache] data saved")],
                [line for line in lines if line.startswith("[cache] data loaded")],
                [line for line in lines if line.startswith("stems ")])

    try:
        saved, loaded, result = run()  # first start: compiles, caches in ~/.cache/numba
        cache = home / ".cache" / "numba"
        assert saved and all(str(cache) in line for line in saved), saved
        assert loaded == []
        assert not list(pkg.rglob("*.nbi"))  # nothing written into the package
        saved2, loaded2, result2 = run()  # next start: loads every kernel, compiles none
        assert saved2 == [] and loaded2, (saved2, loaded2)
        assert result2 == result and str(pkg) in result[0]
    finally:
        for p in [root, *root.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
