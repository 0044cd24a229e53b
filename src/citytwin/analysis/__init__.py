"""Decision support, analysis half: pure functions over arrays and frames.

Nothing here touches the store or the web; :mod:`citytwin.cli` and :mod:`citytwin.api` read the
twin, call these functions and write their pictures and files.

- :mod:`.grid` — the raster grid every map uses (EPSG:5186, GeoTIFF order)
- :mod:`.interpolate` — distribution maps: variograms, ordinary kriging, IDW, cross-validation
- :mod:`.render` — GeoTIFF (EPSG:5186), PNG maps with legend and district outlines, contour GeoJSON
- :mod:`.noise` — energetic (dB) averaging and the Lday/Levening/Lnight/Lden indicators
- :mod:`.hotspots` — Getis-Ord Gi* and Local Moran's I with permutation significance
- :mod:`.anomalies` — a sensor fault versus a real, spatially coherent event
- :mod:`.forecast` — 1–24 h forecasts and the rolling-origin backtest
- :mod:`.traffic` — congestion patterns from TOPIS link speeds
- :mod:`.gentrification` — per-dong indicator panel → composite index and stage
"""
