"""Decision support, simulation half: what-if models run on the twin before the city changes.

Pure models (arrays and frames in, results out); :mod:`citytwin.services` feeds them the twin's
data and :mod:`citytwin.cli` / :mod:`citytwin.api` expose them.

- :mod:`.assignment` — static user-equilibrium traffic assignment (BPR costs, TNTP networks)
- :mod:`.plume` — hazardous-chemical release: Gaussian plume and puff, AEGL threshold zones
- :mod:`.sun` — solar position, building shadows, hours of direct sun lost
- :mod:`.flood` — rainfall ponding on a DEM by fill-and-spill
- :mod:`.scenario` — versioned scenarios: base snapshot + changes + model + parameters + seed
"""
