"""``stemboard --help`` builds its parser from light modules only (issue 25 item 5).

The command bodies (:mod:`stemboard.cli_commands`, :mod:`stemboard.cli_daw`)
load numpy, the Numba kernels, onnxruntime and pedalboard; ``stemboard.cli``
imports them only once a command is parsed. Each check runs in a fresh
interpreter from an empty folder (so the checkout is not on ``sys.path`` by
accident) and reads ``sys.modules``: what was imported, not how long it took.
"""
import json
import os
import subprocess
import sys

import pytest

HEAVY = ("numpy", "numba", "onnxruntime", "scipy", "pedalboard")
# The light modules of the lower rooms the parser reads its choices and defaults from;
# their packages' __init__ load the rest of the room on first use.
LIGHT = {"stemboard.plugin", "stemboard.plugin.defaults", "stemboard.models",
         "stemboard.models.lazy", "stemboard.models.modes"}

WRAPPER = """
import json, sys
from stemboard.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:  # argparse's --help and --version exit
    code = e.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
ours = sorted(m for m in sys.modules if m.startswith(("stemboard.plugin", "stemboard.models",
                                                      "stemboard.dsp", "stemboard.presets",
                                                      "stemboard.batch", "stemboard.jobs",
                                                      "stemboard.cli_")))
print(json.dumps({{"code": code, "heavy": heavy, "ours": ours}}))
"""


def _loaded(tmp_path, *argv):
    """Run ``stemboard.cli.main(argv)`` in a fresh interpreter; its exit code and modules."""
    r = subprocess.run([sys.executable, "-c", WRAPPER.format(heavy=HEAVY), *argv],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stdout


@pytest.mark.parametrize("argv", [["--help"], ["separate", "--help"], ["render", "--help"],
                                  ["batch", "--help"], ["--version"],
                                  ["separate", "--format", "nope"]])
def test_help_and_bad_options_load_no_command_body(tmp_path, argv):
    result, stdout = _loaded(tmp_path, *argv)
    assert result["heavy"] == [], result["heavy"]
    assert set(result["ours"]) <= LIGHT | {"stemboard.cli_common"}, result["ours"]
    assert result["code"] == (1 if argv[-1] == "nope" else 0)
    if argv[-1] == "--help":
        assert stdout.startswith("usage: stemboard"), stdout[:200]


def test_a_parsed_command_loads_its_body(tmp_path):
    """The other side: once a command is chosen, main() imports the bodies and runs it."""
    result, stdout = _loaded(tmp_path, "models")
    assert result["code"] == 0
    assert "stemboard.cli_commands" in result["ours"]
    assert {"numba", "pedalboard"} <= set(result["heavy"])
    assert "(default)" in stdout  # the model list was printed


def test_import_stemboard_loads_nothing_heavy(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import sys, stemboard; print(sorted(m for m in "
                        f"sys.modules if m.split('.')[0] in {HEAVY!r}))"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
