"""The bundled models' outputs on a fixed signal are pinned (issue 27: refactors
change no output).  ``tests/make_fingerprints.py`` wrote the stored values;
rerun it only for a deliberate change of a model's output."""
import json

import numpy as np
import pytest

from make_fingerprints import OUT, cases, fingerprint
from stemboard import StemSeparator
from stemboard.models import bundled_models

STORED = json.loads(OUT.read_text())["models"]
#: Relative to each output's scale: float32 rounding of one operation is 6e-8.
RTOL = 1e-6


def test_every_bundled_model_is_pinned():
    assert sorted(STORED) == sorted(bundled_models())


@pytest.mark.parametrize("model", sorted(STORED))
def test_outputs_match_the_stored_fingerprints(model):
    got = cases(StemSeparator, model)
    want = STORED[model]
    assert sorted(got) == sorted(want)
    for case, outs in want.items():
        assert sorted(got[case]) == sorted(outs), case
        for name, fp in outs.items():
            y = got[case][name]
            where = f"{model}/{case}/{name}"
            assert list(y.shape) == fp["shape"], where
            f = fingerprint(y)
            scale = fp["peak"]
            np.testing.assert_allclose(f["values"], fp["values"], rtol=0,
                                       atol=RTOL * scale, err_msg=where)
            assert abs(f["sum"] - fp["sum"]) <= RTOL * fp["abs_sum"], where
            assert abs(f["energy"] - fp["energy"]) <= RTOL * fp["energy"], where
            assert abs(f["peak"] - fp["peak"]) <= RTOL * scale, where
