"""Package metadata (issue 25): what a fresh `pip install` gets."""
import subprocess
import sys
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    base = tmp_path_factory.mktemp("egg")
    r = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(base)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return Parser().parsestr((base / "stemboard.egg-info" / "PKG-INFO").read_text())


def test_metadata_fields(metadata):
    assert metadata["License"] == "MIT" and (ROOT / "LICENSE").is_file()
    assert metadata["Author"] and metadata["Requires-Python"] == ">=3.10"
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3 :: Only" in classifiers


def test_runtime_and_test_dependencies(metadata):
    requires = metadata.get_all("Requires-Dist")
    runtime = {r.split(">")[0].split("=")[0] for r in requires if "extra ==" not in r}
    test = {r.split(">")[0].split("=")[0] for r in requires if 'extra == "test"' in r}
    assert "pyloudnorm" in runtime  # `stemboard ab` needs it on a plain install
    assert {"pytest", "onnx", "hypothesis", "museval"} <= test


def test_project_urls_name_files_that_exist(metadata):
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert {"Documentation", "Source", "Issues", "Changelog"} <= set(urls)
    source = urls["Source"]
    assert source.startswith("https://") and metadata["Home-page"] == source
    for label, url in urls.items():
        assert url.startswith(source), (label, url)
        if "/blob/main/" in url:
            assert (ROOT / url.split("/blob/main/", 1)[1]).is_file(), (label, url)


def test_import_stemboard_is_lazy(tmp_path):
    """`import stemboard` loads no engine (Numba kernels, onnxruntime) until a name is used."""
    code = ("import sys, stemboard\n"
            "heavy = ('numba', 'onnxruntime', 'stemboard.dsp.kernels', 'stemboard.plugin.engine')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n"
            "stemboard.StemSeparator, stemboard.render, stemboard.plugin.midi.MidiMap\n"
            "print('stemboard.plugin.engine' in sys.modules, 'StemSeparator' in dir(stemboard))\n")
    # Run outside the checkout: its top-level folders are not the installed package.
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "True True"]
    import stemboard

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stemboard.nope  # noqa: B018
