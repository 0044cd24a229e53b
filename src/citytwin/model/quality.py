"""Quality flags: a bit set stored with each observation (STA ``resultQuality``).

Flags never remove data: a flagged observation is stored and served with its flags.
"""

from __future__ import annotations

from enum import IntFlag


class Flag(IntFlag):
    """QC outcomes. The names are what ``resultQuality`` lists."""

    RANGE = 1  # outside the property's physically valid range
    SPIKE = 2  # one reading jumps away from both neighbours
    STEP = 4  # a sudden lasting level shift
    STUCK = 8  # the value stays exactly flat for too long
    GAP = 16  # the reading follows a gap in the series
    FUTURE = 32  # phenomenon time later than ingest time
    DUPLICATE = 64  # another reading of this datastream at the same time disagreed
    DRIFT = 128  # slowly departs from the other sensors of the same property
    SOURCE = 256  # the source itself marked the value as suspect (e.g. KMA QC flag)


def flag_names(bits: int) -> list[str]:
    """The flag names set in ``bits``, in bit order.

    >>> flag_names(Flag.SPIKE | Flag.RANGE)
    ['RANGE', 'SPIKE']
    """
    return [flag.name or "" for flag in Flag if bits & flag]
