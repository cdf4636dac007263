"""meshlab: multi-cluster service mesh and Envoy WebAssembly, one executable lab at a time."""

from .errors import MeshlabError
from .lab import Lab
from .topology import Topology, load_topology

__version__ = "0.1.0"

__all__ = ["Lab", "MeshlabError", "Topology", "load_topology", "__version__"]
