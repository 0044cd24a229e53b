"""Format-specific readers of the spatial model: one module per file format.

Each module turns one kind of file into plain frames and arrays and knows nothing of the models
built from them: :mod:`~citytwin.space.io.osm` streams OpenStreetMap XML/PBF into node/way/relation
arrays and assembles building footprints (ways and multipolygon rings);
:mod:`~citytwin.space.io.osm_roads` reads the driveable ways of an OSM XML extract as a directed
graph; :mod:`~citytwin.space.io.sumo` reads SUMO ``.net.xml`` and :mod:`~citytwin.space.io.tntp`
the TNTP research networks. The public entry points stay in :mod:`citytwin.space.roads`
(``load_osm_roads``, ``load_sumo_network``, ``load_tntp_network``) and
:mod:`citytwin.space.buildings` (``load_buildings``), which import from here, never the reverse.
"""
