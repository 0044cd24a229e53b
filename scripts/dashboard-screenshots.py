"""Screenshots of the operator dashboard for the docs: docs/img/dashboard-{map,distribution,
release,linkage,traffic,closure}.png.

Serves the given store (default: a demo city built by ``citytwin demo`` into a temporary folder)
on a free loopback port and drives Chromium through ``scripts/dashboard-check.mjs`` (the same
driver as the browser tests: any console, request or HTTP error fails the run).

Usage: .venv/bin/python scripts/dashboard-screenshots.py [--store duckdb:///PATH] [--out docs/img]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn

from citytwin.api import create_app
from citytwin.config import Settings

REPO = Path(__file__).resolve().parents[1]
SHOTS = {"": "map", "distribution": "distribution", "release": "release", "linkage": "linkage",
         "traffic/traffic": "traffic", "traffic/closure": "closure"}  # fmt: skip


def demo_store(folder: Path) -> str:
    """Build the demo city (150 sensors, every building: the traffic model's trips come from
    them) and return its store URL."""
    args = ["demo", "--no-serve", "--out", str(folder), "--sensors", "150"]
    citytwin = Path(sys.executable).with_name("citytwin")  # the console script of this venv
    subprocess.run([str(citytwin), *args], check=True, cwd=REPO)
    return f"duckdb:///{folder / 'city.duckdb'}"


def serve(store_url: str) -> tuple[uvicorn.Server, str]:
    app = create_app(Settings(store_url=store_url))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def shoot(root: str, scratch: Path) -> dict[str, Any]:
    """One browser run: the map, the kriging layer, a release and the linkage page."""
    layer = get_json(f"{root}/layers/distribution?property=pm25")
    (west, north), _, (east, south), _ = layer["coordinates"]
    lon, lat = (west + east) / 2, (north + south) / 2
    url = f"{root}/ui/#11.8/{lat:.5f}/{lon:.5f}/0/30"  # English: CI machines may lack CJK fonts
    args = [
        "node", str(REPO / "scripts" / "dashboard-check.mjs"), url, str(scratch / "shot.png"),
        "--width", "1400", "--height", "850", "--full", "--lang", "en",
        "--distribution", "mean",
        "--release", f"{lon + 0.012:.5f},{lat - 0.008:.5f}", "--linkage",
    ]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False)
    report = _checked(result)
    # traffic on its own run, so the release zones are not drawn over it: the busiest street
    flows = get_json(f"{root}/layers/traffic")["features"]
    busiest = max(flows, key=lambda f: f["properties"]["volume"])
    line = busiest["geometry"]["coordinates"]
    lon, lat = (line[0][0] + line[-1][0]) / 2, (line[0][1] + line[-1][1]) / 2
    (scratch / "traffic").mkdir(exist_ok=True)
    args = [
        "node", str(REPO / "scripts" / "dashboard-check.mjs"),
        f"{root}/ui/#13.2/{lat:.5f}/{lon:.5f}/0/20", str(scratch / "traffic" / "shot.png"),
        "--width", "1400", "--height", "850", "--full", "--lang", "en",
        "--traffic", "--close", busiest["properties"]["link_id"],
    ]  # fmt: skip
    run = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False)
    return {**report, "traffic": _checked(run)}


def _checked(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(result.stdout or "{}")
    if not report.get("ok"):
        raise SystemExit(f"dashboard-check failed: {report.get('errors')}\n{result.stderr}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="store URL (default: a fresh demo city)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-shots-") as folder:
        scratch = Path(folder)
        server, root = serve(options.store or demo_store(scratch / "demo"))
        try:
            shoot(root, scratch)
        finally:
            server.should_exit = True
        options.out.mkdir(parents=True, exist_ok=True)
        for step, name in SHOTS.items():
            folder, _, name_in_run = step.rpartition("/")
            shot = f"shot-{name_in_run}.png" if name_in_run else "shot.png"
            source = scratch / folder / shot
            target = options.out / f"dashboard-{name}.png"
            shutil.copyfile(source, target)
            print(target)


if __name__ == "__main__":
    main()
