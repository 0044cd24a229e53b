"""CesiumJS (npm ``cesium``) loads and renders the exported 3D Tiles in headless Chromium.

The Jamsil (asanH.osm) buildings are exported with :func:`write_3dtiles`, then
``scripts/render-tiles.mjs`` serves them on 127.0.0.1 with CesiumJS from ``node_modules`` and
drives Debian's ``/usr/bin/chromium`` (software WebGL through SwiftShader) with playwright-core.
The page has no imagery or terrain and may fetch nothing outside loopback; every console error,
page error, failed request or Cesium render/tile failure fails the test. The screenshot is decoded
here (zlib + struct, no imaging library) and must show the height-coloured buildings.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from citytwin.space.buildings import load_buildings
from citytwin.space.io.tiles3d import write_3dtiles

REPO = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHROMIUM = Path("/usr/bin/chromium")
RENDER_SCRIPT = REPO / "scripts" / "render-tiles.mjs"
JAMSIL_BUILDINGS = 1357  # building ways and multipolygons in asanH.osm (see test_buildings.py)
WIDTH, HEIGHT = 800, 500


def _require_tools() -> None:
    """Skip locally when Chromium or the npm tools are missing; in CI fail loudly instead."""
    missing = [
        what
        for what, present in [
            (f"{CHROMIUM} (Debian package chromium)", CHROMIUM.is_file()),
            ("node", shutil.which("node") is not None),
            ("node_modules/cesium", (REPO / "node_modules" / "cesium" / "Build").is_dir()),
            ("node_modules/playwright-core", (REPO / "node_modules" / "playwright-core").is_dir()),
        ]
        if not present
    ]
    if missing:
        message = (
            f"missing {', '.join(missing)}: "
            "run scripts/system-deps.sh chromium and scripts/node-deps.sh"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """Decode an 8-bit, non-interlaced grey/RGB/RGBA PNG: ``(width, height, channels, pixels)``."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, header, idat = 8, b"", bytearray()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour)
    if depth != 8 or interlace != 0 or channels is None:
        raise ValueError(
            f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}"
        )
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    out = bytearray(height * stride)
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = previous[i]
                c = previous[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif kind != 0:
            raise ValueError(f"bad PNG filter {kind} on row {y}")
        out[y * stride : (y + 1) * stride] = line
        previous = line
    return width, height, channels, bytes(out)


def coloured_fraction(png: Path) -> float:
    """Share of pixels that are strongly coloured (max − min channel > 60).

    The page paints the sky, globe and UI in greys and blues; the buildings carry the style's
    red/orange/yellow height classes, so this counts drawn buildings. A blank, black or
    imagery-only canvas scores ~0.
    """
    width, height, channels, pixels = decode_png(png.read_bytes())
    if channels < 3:
        return 0.0
    hits = 0
    for i in range(0, len(pixels), channels):
        r, g, b = pixels[i], pixels[i + 1], pixels[i + 2]
        if max(r, g, b) - min(r, g, b) > 60 and r > b:
            hits += 1
    return hits / (width * height)


@pytest.fixture(scope="module")
def jamsil_tileset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = load_buildings(shared_data / "osm" / "asanH.osm").frame
    report = write_3dtiles(frame, tmp_path_factory.mktemp("jamsil-3dtiles"))
    assert report.buildings == JAMSIL_BUILDINGS
    return report.tileset


def test_png_decoder_round_trips_every_filter() -> None:
    """The tiny decoder undoes all five PNG row filters (checked on a hand-filtered 2×5 image)."""
    channels, width = 3, 2
    rows = [bytes([10, 20, 30, 200, 100, 50]), bytes([15, 25, 35, 190, 110, 40])] * 3
    rows = rows[:5]
    stride = width * channels
    filtered = bytearray()
    previous = bytes(stride)
    for y, row in enumerate(rows):
        kind = y  # rows use filters 0..4 in turn
        out = bytearray()
        for i in range(stride):
            a = row[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            p = a + b - c
            paeth = (
                a
                if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c)
                else (b if abs(p - b) <= abs(p - c) else c)
            )
            pred = [0, a, b, (a + b) >> 1, paeth][kind]
            out.append((row[i] - pred) & 0xFF)
        filtered += bytes([kind]) + out
        previous = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, len(rows), 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(bytes(filtered)))
        + chunk(b"IEND", b"")
    )
    assert decode_png(png) == (width, len(rows), channels, b"".join(rows))


def test_cesium_renders_jamsil_tileset_in_headless_chromium(
    jamsil_tileset: Path, tmp_path: Path
) -> None:
    _require_tools()
    png = tmp_path / "jamsil.png"
    result = subprocess.run(
        [
            "node",
            str(RENDER_SCRIPT),
            str(jamsil_tileset),
            str(png),
            "--width",
            str(WIDTH),
            "--height",
            str(HEIGHT),
            "--timeout-ms",
            "75000",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=90,
        check=False,
    )
    assert result.returncode in (0, 1), f"render-tiles.mjs failed to run:\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["errors"] == []
    assert report["ok"] is True, report
    assert report["tilesLoaded"] is True
    stats = report["stats"]
    assert stats["featuresLoaded"] == JAMSIL_BUILDINGS
    assert stats["tilesWithContentReady"] >= 1
    assert stats["trianglesSelected"] > 0
    assert report["webgl"]["webgl2"] is True

    assert png.is_file()
    width, height, _, _ = decode_png(png.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    assert coloured_fraction(png) > 0.02, "the screenshot shows no coloured buildings"
