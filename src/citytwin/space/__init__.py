"""Real modelling (S-Map): districts, buildings, roads, CRS, 3D — the city sensors are bound to.

Storage and computation use one metric CRS per city (EPSG:5186 for Korea); WGS84 (lon, lat) only at
the edges. See :mod:`citytwin.space.crs`.
"""
