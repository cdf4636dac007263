"""meshlab's istiod: Istio resources + the service registry in, Envoy configuration out.

A pure function of its inputs -- no processes, no files, no network -- so the parity suite calls it directly.
Organised like Istio's ``pilot/pkg/networking/core``; each module names the Istio files it follows:

- :mod:`.generator`    the config generator: a sidecar's, an ingress gateway's, an east-west gateway's config (listeners)
- :mod:`.endpoints`    the registry a control plane reads, split-horizon EDS, endpoint labels and mTLS marks
- :mod:`.sidecar`      the Sidecar resource's egress hosts: which services a proxy is told about
- :mod:`.pushcontext`  which DestinationRule / VirtualService applies to a host (``model/push_context.go``)
- :mod:`.clusters`     a DestinationRule's traffic policy as cluster fields and endpoint priorities
- :mod:`.routes`       VirtualService routes, retries, faults, Istio's default routes
- :mod:`.security`     PeerAuthentication, AuthorizationPolicy, RequestAuthentication -> filter chains, RBAC, JWT
- :mod:`.gateway`      Gateway servers and TLS origination at the edges
- :mod:`.extensions`   TrafficExtension / WasmPlugin -> HTTP filters and ECDS extension configs
- :mod:`.envoyfilter`  EnvoyFilter patches, applied last
- :mod:`.telemetry`    the stats filter and its listener (``istio_requests_total``)
- :mod:`.tracing`      the Telemetry API's tracing -> each HTTP connection manager's OpenTelemetry tracer
"""

from .generator import Translator

__all__ = ["Translator"]
