"""XML helpers shared by the OSM road and SUMO readers: parse a file, read required attributes.

Errors are :class:`~citytwin.errors.FeedError` naming the file, the element and the attribute.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from citytwin.errors import FeedError


def parse_xml(path: str | Path) -> ET.Element:
    """The root element of an XML file; a parse error becomes a :class:`FeedError` with its line."""
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as error:
        raise FeedError(
            str(path), f"not well-formed XML: {error}", line=error.position[0]
        ) from None


def required_attribute(element: ET.Element, name: str, source: str) -> str:
    """Attribute ``name`` of ``element``; a :class:`FeedError` naming the element when absent."""
    value = element.get(name)
    if value is None:
        where = element.get("id") or element.get("ref") or "?"
        raise FeedError(source, f"<{element.tag} {where}> has no {name!r} attribute")
    return value


def number_attribute(element: ET.Element, name: str, source: str) -> float:
    """Attribute ``name`` as a float; a :class:`FeedError` naming the element if absent or bad."""
    try:
        return float(required_attribute(element, name, source))
    except ValueError:
        where = element.get("id") or element.get("ref") or "?"
        raise FeedError(source, f"<{element.tag} {where}> {name!r} is not a number") from None
