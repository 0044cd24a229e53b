"""The virtual model: the city's live state — latest values, sensors bound to city objects,
district rollups and history — computed from the store (see :class:`citytwin.twin.state.Twin`)."""

from citytwin.twin.state import SUSPECT, Twin

__all__ = ["SUSPECT", "Twin"]
