"""Decision support, simulation half: what-if models run on the twin before the city changes.

Pure models (arrays and frames in, results out); :mod:`citytwin.services` feeds them the twin's
data and :mod:`citytwin.cli` / :mod:`citytwin.api` expose them.

- :mod:`.assignment` — static user-equilibrium traffic assignment: network, BPR costs, ``assign``
- :mod:`.equilibrium` — Frank-Wolfe, conjugate and bi-conjugate Frank-Wolfe with exact line search
- :mod:`.paths` — shortest paths and all-or-nothing loading (first-through-node honoured)
- :mod:`.assignment_whatif` — close a link, change capacity, add a link, scale demand; compare
- :mod:`.dispersion` — Pasquill–Gifford stability classes, plume and puff dispersion coefficients
- :mod:`.plume` — hazardous-chemical release: Gaussian plume and puff on the city grid
- :mod:`.substances` — common hazardous gases with their AEGL-1/2/3 thresholds and sources
- :mod:`.exposure` — AEGL threshold zones and the buildings and residents inside them
- :mod:`.sun` — solar position (NREL SPA)
- :mod:`.shadow` — building shadows on flat ground (Minkowski sum, grid north)
- :mod:`.sunlight` — hours of direct sun on ground and façades, sunlight lost to a proposed building
- :mod:`.dem` — digital elevation models read from GeoTIFF and checked
- :mod:`.depressions` — pits, basins and the order in which they merge (depression hierarchy)
- :mod:`.flood` — rainfall ponding on a DEM by fill-and-spill
- :mod:`.flood_impacts` — flooded buildings and road links
- :mod:`.scenario` — versioned scenarios: base snapshot + changes + model + parameters + seed
  (adapters in :mod:`.scenario_assignment` and :mod:`.scenario_plume`)
"""
