"""Export the Jamsil OSM buildings and the demo city to 3D Tiles and render each with CesiumJS.

Usage: .venv/bin/python scripts/render_tiles.py [--out docs/img] [--work DIR] [--osm FILE]
                                                [--demo-buildings N] [--seed N]

Each tileset is rendered by ``scripts/render-tiles.mjs`` (CesiumJS from npm, Debian's
``/usr/bin/chromium`` headless with SwiftShader WebGL, nothing fetched beyond 127.0.0.1) and saved
as ``OUT/jamsil-tiles.png`` and ``OUT/democity-tiles.png``. Prints one JSON line per render and
exits 1 when any render reports an error. Needs ``scripts/system-deps.sh chromium`` and
``scripts/node-deps.sh``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from citytwin.space.buildings import load_buildings
from citytwin.space.democity import build_demo_city
from citytwin.space.io.tiles3d import write_3dtiles

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OSM = REPO.parent / "shared" / "data" / "osm" / "asanH.osm"


def render(tileset: Path, png: Path, *, timeout_s: float) -> dict[str, Any]:
    """Run ``render-tiles.mjs`` on ``tileset``; return its JSON report."""
    result = subprocess.run(
        [
            "node",
            str(REPO / "scripts" / "render-tiles.mjs"),
            str(tileset),
            str(png),
            "--timeout-ms",
            str(int(timeout_s * 1000)),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout_s + 60,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise SystemExit(f"render-tiles.mjs failed ({result.returncode}):\n{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def buildings_of(name: str, args: argparse.Namespace) -> Any:
    """The buildings GeoDataFrame of ``jamsil`` (the OSM extract) or ``democity``."""
    if name == "jamsil":
        return load_buildings(args.osm).frame
    return build_demo_city(seed=args.seed, buildings=args.demo_buildings).buildings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "img", help="folder for the PNGs"
    )
    parser.add_argument(
        "--work", type=Path, help="folder for the tilesets (default: a temporary one)"
    )
    parser.add_argument("--osm", type=Path, default=DEFAULT_OSM, help="the Jamsil OSM extract")
    parser.add_argument("--demo-buildings", type=int, default=20_000, help="demo city size")
    parser.add_argument("--seed", type=int, default=0, help="demo city seed")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per render")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="render-tiles-") as scratch:
        work = args.work if args.work is not None else Path(scratch)
        failed = False
        for name in ("jamsil", "democity"):
            started = time.perf_counter()
            exported = write_3dtiles(buildings_of(name, args), work / name)
            export_s = time.perf_counter() - started
            report = render(
                exported.tileset, args.out / f"{name}-tiles.png", timeout_s=args.timeout
            )
            report.update(name=name, buildings=exported.buildings, exportSeconds=round(export_s, 1))
            print(json.dumps(report))
            failed = failed or not report["ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
