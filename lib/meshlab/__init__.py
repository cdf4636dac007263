"""meshlab: multi-cluster service mesh and Envoy WebAssembly, one executable lab at a time."""

from typing import Any

from .errors import MeshlabError

__version__ = "0.1.0"

__all__ = ["Lab", "MeshlabError", "Topology", "load_topology", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the sample apps and helper processes (``python -m meshlab.runtime.apps``)
    # import this package too, and must start without loading the whole library.
    if name == "Lab":
        from .lab import Lab

        return Lab
    if name in ("Topology", "load_topology"):
        from . import topology

        return getattr(topology, name)
    raise AttributeError(f"module 'meshlab' has no attribute {name!r}")
