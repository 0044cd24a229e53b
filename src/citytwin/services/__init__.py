"""City services: the twin's data run through the analysis (and, later, simulation and control)
for a department's question — "where is PM2.5 high now?", "which sensors are broken?".

Each service composes :mod:`citytwin.twin` (what the city says) with :mod:`citytwin.analysis`
(pure functions) and returns plain results; :mod:`citytwin.cli` and :mod:`citytwin.api` expose
the same services, so a map made on the command line and one served over HTTP are one code path.
"""
