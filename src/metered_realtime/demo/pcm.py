"""Level and pitch of 16-bit PCM: how the demo and the examples check the audio they hear."""

from __future__ import annotations

import array
import itertools
import math
import sys


def analyse_pcm(pcm: bytes, rate: int) -> tuple[float, float | None]:
    """(RMS level as a fraction of full scale, dominant frequency in Hz or None).

    ``pcm`` is mono signed 16-bit little-endian. The frequency is the strongest bin of a
    Hann-windowed FFT, refined by parabolic interpolation (numpy), or estimated from zero
    crossings when numpy is not installed (exact enough for a pure tone).
    """
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    n = len(samples)
    if n == 0:
        return 0.0, None
    rms = math.sqrt(sum(s * s for s in samples) / n) / 32768.0
    if rms < 1e-4:
        return rms, None
    try:
        import numpy as np
    except ImportError:
        crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
        return rms, crossings * rate / (2.0 * n)
    x = np.asarray(samples, dtype=np.float64) * np.hanning(n)
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    shift = 0.0
    if 0 < k < len(spectrum) - 1:
        a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
        denom = a - 2 * b + c
        if denom != 0:
            shift = float(0.5 * (a - c) / denom)
    return rms, (k + shift) * rate / n


def dbfs(level: float) -> float:
    """A level (fraction of full scale) in dBFS; -inf for silence."""
    return 20 * math.log10(level) if level > 0 else float("-inf")
