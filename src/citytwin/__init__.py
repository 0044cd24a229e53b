"""citytwin — an open-source cyber-physical system (urban digital twin) for cities.

The package tree follows the flow of data (see ARCHITECTURE in the README):
``model`` (standards) → ``ingest`` (feeds, QC) → ``store`` (DuckDB, memory, …) → later ``twin``,
``analysis``, ``simulate``, ``control``; ``cli`` and ``api`` put the pieces together.
"""

__version__ = "0.1.0"
