"""Sample-rate round trips through pedalboard's ``StreamResampler``, whole-sample aligned.

``StreamResampler`` delays its output by ``input_latency * target / source``
output samples and trims the nearest whole number of them, so each stage
leaves a delay of up to half a sample (early or late). Down to the model's
rate and back, the two leftovers add up: measured with a 1 kHz tone, the
round trip was off by -0.43 samples at 8 kHz (a 0 dB null of only -9.5 dB)
and by -1.67 samples at 192 kHz.

Both leftovers are known in advance (pedalboard rounds like C++
``std::round``), and ``pad`` samples of silence put in front of the model-rate
signal delay the output by ``pad * rate / model_rate`` samples, a fraction that
steps through every multiple of ``1 / denominator`` of that ratio. So
:func:`round_trip_alignment` picks the smallest pad that makes the total delay
a whole number of samples to within :data:`ALIGN_TOLERANCE`, and the caller
trims that number. For every standard rate (8 to 384 kHz against 44.1 kHz) the
pad is at most 3.2 ms; see docs/reliability.md for the nulls measured.
"""
import math

import numpy as np
import pedalboard
from pedalboard.io import StreamResampler

#: pedalboard's default quality, pinned: once aligned, a 1 kHz tone nulls at
#: -48 dB or better at 8..192 kHz with it. WindowedSinc64 costs twice the time
#: (resampling already takes 1.3 s per 10 s of stereo at 48 kHz with 4 stems)
#: and was not better at every rate.
QUALITY = pedalboard.Resample.Quality.WindowedSinc32

#: Largest leftover delay accepted, in output samples. At 8 kHz it limits a
#: 1 kHz null to -48 dB; finer would need up to 10 ms more latency at some rates.
ALIGN_TOLERANCE = 0.005

#: Longest pad searched, in seconds at the model's rate.
MAX_PAD_SECONDS = 0.010


class ChannelsFirstResampler:
    """A ``StreamResampler`` at :data:`QUALITY` that only ever sees (channels, n) blocks.

    pedalboard guesses each block's layout from its shape: a fresh resampler
    read a (2, 1) block as one channel of two samples and raised, could not
    read (2, 2) at all, and after such a guess returned later blocks
    transposed. So blocks are held back until they are longer than the channel
    count, which pedalboard always reads as channels-first. A stream resampler's
    output does not depend on how its input is split, so this changes no sample.

    Parameters
    ----------
    source_rate, target_rate : float
    num_channels : int
    """

    def __init__(self, source_rate, target_rate, num_channels):
        self._resampler = StreamResampler(source_rate, target_rate, num_channels, QUALITY)
        self.num_channels = num_channels
        self.input_latency = self._resampler.input_latency
        self.reset()

    def reset(self):
        self._resampler.reset()
        self._held = np.zeros((self.num_channels, 0), np.float32)

    def process(self, block=None):
        """Resample (channels, n) float32; without ``block``, flush the stream.

        Returns
        -------
        ndarray, shape (channels, m), float32
        """
        if block is None:
            # pedalboard's own flush pushes input_latency samples of silence;
            # the held samples go in front of them.
            silence = max(int(self.input_latency), self.num_channels + 1)
            block = np.zeros((self.num_channels, silence), np.float32)
        if self._held.shape[1]:
            block = np.concatenate([self._held, block], axis=1)
        if block.shape[1] <= self.num_channels:
            self._held = np.ascontiguousarray(block, np.float32)
            return np.zeros((self.num_channels, 0), np.float32)
        self._held = self._held[:, :0]
        return self._resampler.process(np.ascontiguousarray(block, np.float32))


def leftover_delay(latency, source_rate, target_rate):
    """The delay a ``StreamResampler`` leaves after trimming its latency.

    Parameters
    ----------
    latency : float
        Its ``input_latency``, in input samples.
    source_rate, target_rate : float

    Returns
    -------
    float
        In output samples, from -0.5 to 0.5; positive is late.
    """
    # pedalboard keeps the rates as C floats and divides in double.
    ratio = float(np.float32(source_rate)) / float(np.float32(target_rate))
    delay = latency / ratio
    return delay - math.floor(delay + 0.5)  # std::round: halves away from zero


def round_trip_alignment(rate, model_rate, down_latency, up_latency, *,
                         tolerance=ALIGN_TOLERANCE):
    """Silence to put before the upsampler, and output samples to trim after it.

    Parameters
    ----------
    rate, model_rate : float
        The stream's rate and the model's.
    down_latency, up_latency : float
        ``input_latency`` of the downsampler (``rate`` to ``model_rate``) and
        of the upsampler (back).
    tolerance : float
        Leftover delay accepted, in output samples.

    Returns
    -------
    pad : int
        Model-rate samples of silence to put in front of the upsampler's input.
    trim : int
        Output samples to drop from the front of the upsampler's output, after
        which the round trip is aligned to within ``tolerance`` (or as close as
        a pad of up to :data:`MAX_PAD_SECONDS` gets, for rates with no small
        ratio to the model's).
    """
    step = rate / model_rate  # output samples per model-rate sample
    delay = (leftover_delay(down_latency, rate, model_rate) * step
             + leftover_delay(up_latency, model_rate, rate))
    best = None
    for pad in range(int(model_rate * MAX_PAD_SECONDS) + 1):
        total = delay + pad * step
        trim = math.floor(total + 0.5)
        if trim < 0:
            continue
        error = abs(total - trim)
        if error <= tolerance:
            return pad, trim
        if best is None or error < best[0]:
            best = (error, pad, trim)
    return best[1], best[2]
