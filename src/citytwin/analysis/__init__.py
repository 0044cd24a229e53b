"""Decision support, analysis half: pure functions over arrays and frames.

Nothing here touches the store or the web; :mod:`citytwin.services.analyses` reads the twin and
calls these functions, and :mod:`citytwin.cli` and :mod:`citytwin.api` expose the results.

- :mod:`.grid` — the raster grid every map uses (EPSG:5186, GeoTIFF order)
- :mod:`.variogram` — empirical variograms (gstat's bins) and fitted models
- :mod:`.interpolate` — distribution maps: ordinary kriging, IDW, cross-validation
- :mod:`.render` — GeoTIFF (EPSG:5186), PNG maps with legend and district outlines, contour GeoJSON
- :mod:`.noise` — energetic (dB) averaging and the Lday/Levening/Lnight/Lden indicators
- :mod:`.hotspots` — Getis-Ord Gi* and Local Moran's I with permutation significance
- :mod:`.anomalies` — a sensor fault versus a real, spatially coherent event
- :mod:`.robust` — NaN-aware medians, trailing robust z-scores, runs and stuck sensors
- :mod:`.forecast` — 1–24 h forecasts (direct ridge per horizon) and the baselines
- :mod:`.backtest` — rolling-origin backtest against persistence and seasonal-naive; CSV series
- :mod:`.topis_files` — reading TOPIS link-speed files into one row per link, day and hour
- :mod:`.traffic` — congestion patterns from TOPIS link speeds: index, levels, recurring bottlenecks
- :mod:`.traffic_maps` — hour × weekday heatmap, link map by TOPIS level and its GeoJSON layer
- :mod:`.gentrification_mapping` — raw keys, indicators and the YAML mapping of a per-dong table
- :mod:`.gentrification` — per-dong indicator panel → composite index and stage
- :mod:`.gentrification_maps` — stage choropleth PNG and GeoJSON
"""
