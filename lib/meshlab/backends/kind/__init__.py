"""The kind backend: real kind clusters and real Istio, or — with ``dry_run`` — the exact plan of
every command and manifest, validated, for an instructor to read.

    from meshlab.backends.kind import up_plan
    print(up_plan(load_topology("separate-networks"), Path("/tmp/lab")))
"""

from .backend import KindBackend, Pod, bringup_estimate, bringup_minutes, kind_clusters, parse_calls, parse_endpoints, parse_proxy_status, up_plan
from .executor import Executor
from .plan import Plan, Step
from .schema import SchemaError, validate

__all__ = ["Executor", "KindBackend", "Plan", "Pod", "SchemaError", "Step", "bringup_estimate", "bringup_minutes", "kind_clusters", "parse_calls", "parse_endpoints",
           "parse_proxy_status", "up_plan", "validate"]
