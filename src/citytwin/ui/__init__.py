"""The operator dashboard's built assets, served by :mod:`citytwin.api.ui` under ``/ui/``.

``static/`` holds the bundle (``index.html``, ``app.js``, ``app.css`` and MapLibre's worker) that
``node web/build.mjs`` writes from the sources in ``web/`` (MapLibre GL + deck.gl, bundled with
esbuild: no CDN, fonts or tiles, so the page works offline). The folder is absent until built.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"

__all__ = ["STATIC_DIR"]
