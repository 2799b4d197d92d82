"""The one range every stem gain and level trim in stemboard must lie in.

A gain is a number of dB from :data:`MIN_GAIN_DB` to :data:`MAX_GAIN_DB`, or
``-inf`` to mute. The bounds exist because gains are applied in float32: at
+1000 dB a stem's linear gain (1e50) overflows to inf and the output turns to
NaN, and at +1e6 dB ``10 ** (db / 20)`` itself overflows. +24 dB (x15.8) is
more boost than any mix move needs, and below -120 dB a float32 signal is
already under its noise floor, so asking for less is asking to mute.

The API (``set_gain``, ``gains_db=``), presets, MIDI maps, the CLI's ``--gain``,
``StemSplit`` and ``ABSwitch`` all validate through :func:`check_gain_db`.
"""
import math

MIN_GAIN_DB = -120.0
MAX_GAIN_DB = 24.0
GAIN_RANGE_TEXT = f"a finite dB value from {MIN_GAIN_DB:g} to +{MAX_GAIN_DB:g}, or -inf to mute"


def check_gain_db(value, *, what="gain", error=ValueError):
    """Return ``value`` as float dB if it is a valid gain, else raise ``error``.

    Parameters
    ----------
    value : float
        dB, or ``-inf`` to mute. Booleans and non-numbers are refused.
    what : str
        Names the value in the message, e.g. ``"gain for 'vocals'"`` or
        ``"my.json: gains_db['vocals']"``.
    error : type
        The exception to raise (``PresetError``, ``MidiMapError``, ...); it is
        called with the message.

    Returns
    -------
    float

    Raises
    ------
    error
        For NaN, ``+inf``, non-numbers and values outside the range, with a
        message naming ``what`` and the value.
    """
    if isinstance(value, bool):
        raise error(f"{what} must be {GAIN_RANGE_TEXT}, got {value!r}")
    try:
        db = float(value)
    except (TypeError, ValueError):
        raise error(f"{what} must be {GAIN_RANGE_TEXT}, got {value!r}") from None
    if db == -math.inf:
        return db
    if math.isnan(db) or not MIN_GAIN_DB <= db <= MAX_GAIN_DB:
        raise error(f"{what} must be {GAIN_RANGE_TEXT}, got {value!r}")
    return db


def db_to_gain(db):
    """dB to linear gain; ``-inf`` dB is silence."""
    return 0.0 if db == -math.inf else 10.0 ** (db / 20.0)
