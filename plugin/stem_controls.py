"""Per-stem gain controls shared by every processor that remixes stems."""
import math

from stemboard.dsp.gains import check_gain_db


class GainsView(dict):
    """A snapshot of per-stem gains that refuses changes, naming the method that works.

    A ``dict`` (so it compares, copies and serialises like one), because
    ``sep.gains_db["drums"] = -12`` on a plain copy was silently ignored.
    """

    def _refuse(self, *args, **kwargs):
        raise TypeError("gains_db is read-only; use set_gain(stem, db), mute(stem) or "
                        "solo(stem)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    update = pop = popitem = clear = setdefault = _refuse

    def __reduce__(self):
        # copy, deepcopy and pickle give a plain (editable) dict.
        return (dict, (dict(self),))


class StemGainControls:
    """``set_gain`` / ``mute`` / ``solo`` / ``unmute_all`` over ``self._gains_db``.

    A class using it provides ``stems`` and a ``_gains_db`` dict (stem to dB),
    and may override :meth:`_gain_changed` to act on a change (``StemSplit``
    schedules a sample-accurate ramp there).
    """

    @property
    def gains_db(self):
        """The per-stem gains in dB, read-only: change them with :meth:`set_gain`."""
        return GainsView(self._gains_db)

    def _check_stem(self, stem):
        if stem not in self._gains_db:
            raise ValueError(f"unknown stem {stem!r}; this model has {list(self.stems)}")

    def set_gain(self, stem, db):
        """Set one stem's gain in dB.

        Parameters
        ----------
        stem : str
        db : float
            ``-inf`` mutes; otherwise from -120 to +24 dB
            (``stemboard.dsp.gains``).

        Raises
        ------
        ValueError
            For unknown stems and gains outside that range, naming them.
        """
        self._check_stem(stem)
        db = check_gain_db(db, what=f"gain for {stem!r}")
        self._gains_db[stem] = db  # kept in dB so presets round-trip exactly
        self._gain_changed(stem, db)

    def _gain_changed(self, stem, db):
        """Hook called after a stem's gain changed."""

    def mute(self, *stems):
        """Silence the named stems."""
        for s in stems:
            self.set_gain(s, -math.inf)

    def solo(self, *stems):
        """Keep only the named stems (at 0 dB) and mute the rest."""
        for s in stems:
            self._check_stem(s)
        for s in self.stems:
            self.set_gain(s, 0.0 if s in stems else -math.inf)

    def unmute_all(self):
        """Put every stem back at 0 dB."""
        for s in self.stems:
            self.set_gain(s, 0.0)
