"""Istio security resources -> Envoy, as istiod builds them for a sidecar's inbound side.

- PeerAuthentication: the effective mTLS mode of a workload port (mesh < namespace < workload <
  port; the oldest policy wins within a scope; UNSET inherits), and the inbound filter chains for it:
  STRICT accepts only TLS, PERMISSIVE tells TLS carrying Istio's ALPN from plaintext with the TLS
  inspector and serves both, DISABLE accepts only plaintext (pilot/pkg/security/authn/policy_applier.go,
  pilot/pkg/networking/core/filterchain_options.go). Clients follow it through auto-mTLS: an endpoint is
  marked ``tlsMode: istio`` unless it has no sidecar or its server DISABLEs mTLS on that port
  (pilot/pkg/xds/endpoints/mtls_checker.go).
- AuthorizationPolicy: Envoy RBAC filters in Istio's order — AUDIT, then DENY, then ALLOW — with one
  policy per rule named ``ns[<ns>]-policy[<name>]-rule[<i>]``; HTTP-only fields make an ALLOW rule
  disappear and a DENY rule wider on TCP chains (pilot/pkg/security/authz/builder/builder.go,
  pilot/pkg/security/authz/model/{model,generator}.go).
- RequestAuthentication: Envoy's ``jwt_authn`` filter with inline key sets, one provider per rule sorted
  by issuer, a present token must be valid and a missing one is let through.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from .. import xds as E
from ..resources import DRY_RUN, PARSE_BOOL

ROOT_NAMESPACE = "istio-system"  # meshConfig.rootNamespace: mesh-wide policies live here
ALL_ISTIO_MTLS_ALPNS = ["istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"]


def client_mtls_alpns(http2: bool) -> list[str]:
    """What a client sidecar offers (cluster_tls.go): ``ALPNInMeshH2WithMxc`` on an HTTP/2 cluster, else ``ALPNInMeshWithMxc``."""
    return ["istio-peer-exchange", "istio", "h2"] if http2 else ["istio-peer-exchange", "istio"]
RBAC_HTTP = E.T + "envoy.extensions.filters.http.rbac.v3.RBAC"
RBAC_TCP = E.T + "envoy.extensions.filters.network.rbac.v3.RBAC"
JWT_AUTHN = E.T + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
JWT_FILTER = "envoy.filters.http.jwt_authn"
RAW_BUFFER = {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {"@type": E.T + "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}
_ACTIONS = {"AUDIT": "LOG", "DENY": "DENY", "ALLOW": "ALLOW"}
_MATCH_NEVER = {"permissions": [{"not_rule": {"any": True}}], "principals": [{"not_id": {"any": True}}]}


def _ns(r: dict[str, Any]) -> str:
    return str(r["metadata"].get("namespace", "default"))


def selects(r: dict[str, Any], labels: dict[str, str], namespace: str) -> bool:
    """A policy applies to a workload in its own namespace, or everywhere from the root namespace,
    when its ``selector.matchLabels`` (if any) are all among the workload's labels."""
    if _ns(r) not in (namespace, ROOT_NAMESPACE):
        return False
    want = r["spec"].get("selector", {}).get("matchLabels", {})
    return all(labels.get(k) == v for k, v in want.items())


# ---- PeerAuthentication --------------------------------------------------------------------------
def mtls_mode(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str, port: int) -> str:
    """The effective mode on ``port`` (ComposePeerAuthentication): PERMISSIVE without any policy."""
    mesh = ns = workload = None
    for r in resources:  # in the order applied: the oldest of one scope wins
        if r["kind"] != "PeerAuthentication" or not selects(r, labels, namespace):
            continue
        if not r["spec"].get("selector", {}).get("matchLabels"):
            if _ns(r) == ROOT_NAMESPACE:
                mesh = mesh or r
            else:
                ns = ns or r
        elif _ns(r) != ROOT_NAMESPACE:  # a workload policy in the root namespace is ignored
            workload = workload or r
    mode = "PERMISSIVE"
    for r in (mesh, ns, workload):
        m = (r or {}).get("spec", {}).get("mtls", {}).get("mode", "UNSET")
        if m != "UNSET":
            mode = m
    if workload:
        for p, setting in workload["spec"].get("portLevelMtls", {}).items():
            if int(p) == port:
                m = setting.get("mode", "UNSET")
                return mode if m == "UNSET" else m
    return mode


def inbound_filter_chains(mode: str, tls: dict[str, Any], filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The inbound chains of an HTTP port for its mTLS mode (inbound*HTTPFilterChainMatch*Options)."""
    secure = {"transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": E.DOWNSTREAM_TLS, **tls}}, "filters": filters}
    plain = {"filter_chain_match": {"transport_protocol": "raw_buffer"}, "filters": filters}
    if mode == "STRICT":
        return [{"filter_chain_match": {"transport_protocol": "tls"}, **secure}]
    if mode == "PERMISSIVE":
        return [{"filter_chain_match": {"transport_protocol": "tls", "application_protocols": ALL_ISTIO_MTLS_ALPNS}, **secure}, plain]
    return [plain]


def downstream_mtls(cert_chain: str, key: str, root: str, trust_domains: list[str]) -> dict[str, Any]:
    """BuildInboundTLS: client certificate required, from the mesh's root, with a SPIFFE ID in one of
    the trust domains the mesh validates (its own and its ``trustDomainAliases``)."""
    return {
        "require_client_certificate": True,
        "common_tls_context": {
            **E.tls_context(cert_chain, key, root, ["h2", "http/1.1"]),
            "validation_context": {
                "trusted_ca": {"filename": root},
                "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"prefix": f"spiffe://{td}/"}} for td in trust_domains],
            },
        },
    }


def client_transport(tls: dict[str, Any], auto: bool) -> dict[str, Any]:
    """Cluster fields for ISTIO_MUTUAL: always (a DestinationRule says so), or auto-mTLS — TLS to
    endpoints marked ``tlsMode: istio``, plaintext to the others (buildAutoMtlsSettings)."""
    socket = {"name": "envoy.transport_sockets.tls", "typed_config": {"@type": E.UPSTREAM_TLS, **tls}}
    if not auto:
        return {"transport_socket": socket}
    return {
        "transport_socket_matches": [
            {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": socket},
            {"name": "tlsMode-disabled", "match": {}, "transport_socket": RAW_BUFFER},
        ]
    }


# ---- AuthorizationPolicy -------------------------------------------------------------------------
class _Unsupported(Exception):
    """A field that cannot be expressed on this chain (HTTP-only on TCP)."""


def _string(v: str, prefix: str = "", ignore_case: bool = False) -> dict[str, Any]:
    """StringMatcherWithPrefix: ``*`` any, ``*x`` suffix, ``x*`` prefix, else exact."""
    case = {"ignore_case": True} if ignore_case else {}
    if v == "*":
        return {"safe_regex": {"regex": ".+"}}
    if v.startswith("*"):
        if prefix:
            return {"safe_regex": {"regex": prefix + ".*" + re.escape(v[1:])}}
        return {"suffix": v[1:], **case}
    if v.endswith("*"):
        return {"prefix": prefix + v[:-1], **case}
    return {"exact": prefix + v, **case}


def _header(name: str, v: str, ignore_case: bool = False) -> dict[str, Any]:
    if v == "*":
        return {"name": name, "present_match": True}
    return {"name": name, "string_match": _string(v, ignore_case=ignore_case)}


def _cidr(v: str) -> dict[str, Any]:
    """AddrStrToCidrRange: the address as written, /32 (or /128) without a length."""
    return {"address_prefix": v.split("/")[0], "prefix_len": ipaddress.ip_network(v, strict=False).prefixlen}


def _authenticated(m: dict[str, Any]) -> dict[str, Any]:
    return {"authenticated": {"principal_name": m}}


def _jwt_claim(claim: str, m: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"filter": JWT_FILTER, "path": [{"key": "payload"}, {"key": claim}], "value": {"string_match": m}}}


def _jwt_list(claims: list[str], values: list[str]) -> dict[str, Any]:
    vals = [{"string_match": _string(v)} for v in values]
    value = vals[0] if len(vals) == 1 else {"or_match": {"value_matchers": vals}}
    path = [{"key": "payload"}] + [{"key": c} for c in claims]
    return {"metadata": {"filter": JWT_FILTER, "path": path, "value": {"or_match": {"value_matchers": [{"list_match": {"one_of": value}}, value]}}}}


def _request_principals(values: list[str]) -> dict[str, Any]:
    """requestPrincipalGenerator: ``<iss>/<sub>`` split at the last ``/``, both matched in the JWT payload."""
    out = []
    for v in values:
        iss, found, sub = v.rpartition("/")
        if not found:
            iss, sub = v, ""
        any_ = {"safe_regex": {"regex": ".+"}}
        if v == "*":
            mi, ms = any_, any_
        elif v.startswith("*"):
            if found:
                mi = any_ if iss == "*" else {"suffix": iss[1:]}
                ms = {"exact": sub}
            else:
                mi, ms = any_, {"suffix": v[1:]}
        elif v.endswith("*"):
            if found:
                mi = {"exact": iss}
                ms = any_ if sub == "*" else {"prefix": sub[:-1]}
            else:
                mi, ms = {"prefix": v[:-1]}, any_
        else:
            mi, ms = {"exact": iss}, {"exact": sub}
        out.append({"and_ids": {"ids": [_jwt_claim("iss", mi), _jwt_claim("sub", ms)]}})
    return out[0] if len(out) == 1 else {"or_ids": {"ids": out}}


def _claims_path(key: str) -> list[str]:
    """``request.auth.claims[a][b]`` -> ["a", "b"]."""
    return key[len("request.auth.claims[") : -1].split("][")


# key -> (is a principal?, one matcher per value, or None; or a matcher for all values at once (extended)).
def _one(kind: str, for_tcp: bool, key: str, v: str) -> dict[str, Any]:
    http_only = kind in ("hosts", "methods", "paths", "header")
    if http_only and for_tcp:
        raise _Unsupported(f"{key!r} is HTTP only")
    if kind == "principal":
        return _authenticated(_string(v, "spiffe://"))
    if kind == "namespace":
        return _authenticated({"safe_regex": {"regex": f".*/ns/{'.*'.join(re.escape(p) for p in v.split('*'))}/.*"}})
    if kind == "source_ip":
        return {"direct_remote_ip": _cidr(v)}
    if kind == "remote_ip":
        return {"remote_ip": _cidr(v)}
    if kind == "header":
        return {"header": _header(key[len("request.headers[") : -1], v)}
    if kind == "hosts":
        return {"header": _header(":authority", v, ignore_case=True)}
    if kind == "methods":
        return {"header": _header(":method", v)}
    if kind == "paths":
        return {"url_path": {"path": _string(v)}}
    if kind == "ports":
        return {"destination_port": int(v)}
    if kind == "dest_ip":
        return {"destination_ip": _cidr(v)}
    if kind == "sni":
        return {"requested_server_name": _string(v)}
    raise AssertionError(kind)


def _extended(kind: str, for_tcp: bool, key: str, values: list[str]) -> dict[str, Any]:
    if for_tcp:
        raise _Unsupported(f"{key!r} is HTTP only")
    if kind == "request_principal":
        return _request_principals(values)
    if kind == "audiences":
        return _jwt_list(["aud"], values)
    if kind == "presenter":
        return _jwt_list(["azp"], values)
    return _jwt_list(_claims_path(key), values)


_EXTENDED = {"request_principal", "audiences", "presenter", "claims"}
_WHEN = {
    "source.ip": (True, "source_ip"), "remote.ip": (True, "remote_ip"), "source.namespace": (True, "namespace"),
    "source.principal": (True, "principal"), "request.auth.principal": (True, "request_principal"),
    "request.auth.audiences": (True, "audiences"), "request.auth.presenter": (True, "presenter"),
    "destination.ip": (False, "dest_ip"), "destination.port": (False, "ports"), "connection.sni": (False, "sni"),
}  # fmt: skip
# source fields in the order Istio inserts them at the front (so the generated order is reversed)
_SOURCE = [("ipBlocks", "source_ip"), ("remoteIpBlocks", "remote_ip"), ("namespaces", "namespace"),
           ("requestPrincipals", "request_principal"), ("principals", "principal")]  # fmt: skip
_OPERATION = [("ports", "ports"), ("paths", "paths"), ("methods", "methods"), ("hosts", "hosts")]

Cond = tuple[str, str, list[str], list[str]]  # (key, kind, values, notValues)


def migrate_trust_domain(principal: str, bundle: list[str]) -> list[str]:
    """bundle.go ``ReplaceTrustDomainAliases`` for one principal (``bundle``: the local trust domain, then its
    aliases). A ``<td>/ns/<ns>/sa/<sa>`` principal whose trust domain matches the bundle (exactly, or as a
    ``prefix*`` / ``*suffix`` pattern either way round), or is ``cluster.local``, is written for every trust domain
    of the bundle: as written for those a ``*suffix`` trust domain matches, with the trust domain replaced for the
    others. A ``*`` trust domain, another trust domain, or a principal of another form stays as written."""
    parts = principal.split("/")
    if len(parts) != 5 or parts[0] == "*":
        return [principal]
    td = parts[0]
    if not (td == "cluster.local" or any(_td_match(td, b) for b in bundle)):
        return [principal]
    out: list[str] = []
    for b in bundle:
        p = principal if _suffix_match(b, td) else "/".join([b, *parts[1:]])
        if p not in out:
            out.append(p)
    return out


def _prefix_match(a: str, pattern: str) -> bool:
    return pattern.endswith("*") and a.startswith(pattern[:-1])


def _suffix_match(a: str, pattern: str) -> bool:
    return pattern.startswith("*") and a.endswith(pattern[1:])


def _td_match(a: str, b: str) -> bool:
    """trustdomain util.go ``stringMatch`` for one element: equal, ``*``, or a prefix/suffix pattern on either side."""
    return a == b or b == "*" or _prefix_match(a, b) or _prefix_match(b, a) or _suffix_match(a, b) or _suffix_match(b, a)


def _rule_model(rule: dict[str, Any], bundle: list[str]) -> tuple[list[list[Cond]], list[list[Cond]]]:
    """(principal lists, permission lists) of one rule: one list per ``from`` / ``to`` entry, each ANDed."""
    base_principal: list[Cond] = []
    base_permission: list[Cond] = []
    for w in rule.get("when", []):
        key = w["key"]
        if key.startswith("request.headers["):
            is_principal, kind = True, "header"
        elif key.startswith("request.auth.claims["):
            is_principal, kind = True, "claims"
        else:
            is_principal, kind = _WHEN[key]
        (base_principal if is_principal else base_permission).append((key, kind, w.get("values", []), w.get("notValues", [])))

    def front(base: list[Cond], fields: dict[str, list[str]], order: list[tuple[str, str]]) -> list[Cond]:
        merged = list(base)
        for field, kind in order:
            values, not_values = fields.get(field, []), fields.get("not" + field[0].upper() + field[1:], [])
            if values or not_values:
                merged.insert(0, (field, kind, values, not_values))
        return merged

    principals = [front(base_principal, f.get("source", {}), _SOURCE) for f in rule.get("from", [])] or [base_principal]
    permissions = [front(base_permission, t.get("operation", {}), _OPERATION) for t in rule.get("to", [])] or [base_permission]
    for lst in principals:  # MigrateTrustDomain
        for i, (key, kind, values, not_values) in enumerate(lst):
            if kind == "principal":
                lst[i] = (key, kind, [p for v in values for p in migrate_trust_domain(v, bundle)],
                          [p for v in not_values for p in migrate_trust_domain(v, bundle)])  # fmt: skip
    return principals, permissions


def _generate(conds: list[Cond], principal: bool, for_tcp: bool, action: str) -> dict[str, Any]:
    """AND of every condition: an OR of its values, and NOT(OR) of its notValues."""
    any_, or_, not_, and_ = ("any", "or_ids", "not_id", "and_ids") if principal else ("any", "or_rules", "not_rule", "and_rules")
    inner = "ids" if principal else "rules"
    out: list[dict[str, Any]] = []
    for key, kind, values, not_values in conds:
        for negate, vals in ((False, values), (True, not_values)):
            if not vals:
                continue
            try:
                if kind in _EXTENDED:
                    m = _extended(kind, for_tcp, key, vals)
                else:
                    ms = [_one(kind, for_tcp, key, v) for v in vals]
                    m = {or_: {inner: ms}}
            except _Unsupported:
                if action == "ALLOW":
                    raise  # the whole rule is dropped: a narrower ALLOW
                continue  # DENY/AUDIT: the condition is dropped: a wider rule
            out.append({not_: m} if negate else m)
    return {and_: {inner: out or [{any_: True}]}}


def _policy(rule: dict[str, Any], bundle: list[str], for_tcp: bool, action: str) -> dict[str, Any] | None:
    principals, permissions = _rule_model(rule, bundle)
    try:
        return {
            "permissions": [_generate(p, False, for_tcp, action) for p in permissions],
            "principals": [_generate(p, True, for_tcp, action) for p in principals],
        }
    except _Unsupported:
        return None


def is_dry_run(policy: dict[str, Any]) -> bool:
    """builder.go ``isDryRun``: the ``istio.io/dry-run`` annotation as Go's ``strconv.ParseBool`` reads it
    (``1``, ``t``, ``True``...; a value it refuses is refused at apply, as Istio's webhook does)."""
    return PARSE_BOOL.get(((policy.get("metadata") or {}).get("annotations") or {}).get(DRY_RUN, "false"), False)


def _rbac(policies: list[dict[str, Any]], action: str, bundle: list[str], for_tcp: bool) -> dict[str, Any] | None:
    """One RBAC filter config for the policies of one action: enforced rules and dry-run shadow rules."""
    if not policies:
        return None
    enforce: dict[str, Any] = {}
    shadow: dict[str, Any] = {}
    for r in policies:
        target = shadow if is_dry_run(r) else enforce
        rules = r["spec"].get("rules", [])
        for i, rule in enumerate(rules):
            p = _policy(rule or {}, bundle, for_tcp, action)
            if p is not None:
                target[f"ns[{_ns(r)}]-policy[{r['metadata']['name']}]-rule[{i}]"] = p
        if not rules:  # an empty policy matches nothing (so an empty ALLOW denies everything)
            target[f"ns[{_ns(r)}]-policy[{r['metadata']['name']}]-rule[0]"] = _MATCH_NEVER
    envoy_action = _ACTIONS[action]
    cfg: dict[str, Any] = {"@type": RBAC_TCP if for_tcp else RBAC_HTTP}
    has_enforce = any(not is_dry_run(r) for r in policies)
    if has_enforce:
        cfg["rules"] = {"action": envoy_action, "policies": enforce}
    if shadow or not has_enforce:
        cfg["shadow_rules"] = {"action": envoy_action, "policies": shadow}
    # shadowRuleStatPrefix reads the action of the shadow rules, ALLOW when there are none
    cfg["shadow_rules_stat_prefix"] = "istio_dry_run_deny_" if "shadow_rules" in cfg and envoy_action == "DENY" else "istio_dry_run_allow_"
    if for_tcp:
        cfg["stat_prefix"] = "tcp."
    return cfg


def authorization_policies(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"AUDIT": [], "DENY": [], "ALLOW": []}
    for r in resources:
        if r["kind"] == "AuthorizationPolicy" and selects(r, labels, namespace):
            out[r["spec"].get("action", "ALLOW")].append(r)
    return out


def rbac_filters(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str, bundle: list[str], for_tcp: bool = False) -> list[dict[str, Any]]:
    """The RBAC filters of one chain, AUDIT then DENY then ALLOW (so a DENY wins over any ALLOW)."""
    name = "envoy.filters.network.rbac" if for_tcp else "envoy.filters.http.rbac"
    out = []
    for action, policies in authorization_policies(resources, labels, namespace).items():
        cfg = _rbac(policies, action, bundle, for_tcp)
        if cfg:
            out.append({"name": name, "typed_config": cfg})
    return out


# ---- RequestAuthentication -----------------------------------------------------------------------
def jwt_filter(resources: list[dict[str, Any]], labels: dict[str, str], namespace: str, gateway: bool = False) -> list[dict[str, Any]]:
    """``jwt_authn`` for every RequestAuthentication selecting the workload (convertToEnvoyJwtConfig)."""
    rules = [j for r in resources if r["kind"] == "RequestAuthentication" and selects(r, labels, namespace) for j in r["spec"].get("jwtRules", [])]
    if not rules:
        return []
    rules.sort(key=lambda j: j["issuer"])
    providers: dict[str, Any] = {}
    inner: list[dict[str, Any]] = []
    outer: list[dict[str, Any]] = []
    for i, j in enumerate(rules):
        p: dict[str, Any] = {
            "issuer": j["issuer"],
            "local_jwks": {"inline_string": j["jwks"]},
            "payload_in_metadata": "payload",
            "normalize_payload_in_metadata": {"space_delimited_claims": ["permission", "scope"]},
        }
        if gateway:
            p["clear_route_cache"] = True
        if j.get("audiences"):
            p["audiences"] = j["audiences"]
        if j.get("forwardOriginalToken"):
            p["forward"] = True
        if j.get("outputPayloadToHeader"):
            p["forward_payload_header"] = j["outputPayloadToHeader"]
        if j.get("fromHeaders"):
            p["from_headers"] = [{"name": h["name"], **({"value_prefix": h["prefix"]} if "prefix" in h else {})} for h in j["fromHeaders"]]
        if j.get("fromParams"):
            p["from_params"] = j["fromParams"]
        name = f"origins-{i}"
        providers[name] = p
        inner.append({"requires_any": {"requirements": [{"provider_name": name}, {"allow_missing": {}}]}})
        outer.append({"provider_name": name})
    requires = inner[0] if len(inner) == 1 else {"requires_any": {"requirements": [*outer, {"requires_all": {"requirements": inner}}]}}
    cfg = {"@type": JWT_AUTHN, "providers": providers, "rules": [{"match": {"prefix": "/"}, "requires": requires}], "bypass_cors_preflight": True}
    return [{"name": JWT_FILTER, "typed_config": cfg}]


def inbound_http_filters(
    resources: list[dict[str, Any]], labels: dict[str, str], namespace: str, bundle: list[str],
    wasm: Callable[[str], list[dict[str, Any]]], gateway: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """Istio's HTTP filter order on an inbound (or gateway) chain: Wasm AUTHN, jwt_authn, Wasm AUTHZ, RBAC,
    Wasm STATS and unspecified (``wasm(phase)`` gives the Wasm filters of one phase)."""
    return [
        *wasm("AUTHN"), *jwt_filter(resources, labels, namespace, gateway), *wasm("AUTHZ"),
        *rbac_filters(resources, labels, namespace, bundle), *wasm("STATS"), *wasm("UNSPECIFIED_PHASE"),
    ]  # fmt: skip


def unmatched_selectors(resources: list[dict[str, Any]], workloads: list[tuple[dict[str, str], str]]) -> list[str]:
    """Security policies whose selector matches no workload (``(labels, namespace)`` pairs): worth a warning."""
    out = []
    for r in resources:
        if r["kind"] in ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication") and r["spec"].get("selector", {}).get("matchLabels"):
            if not any(selects(r, labels, ns) for labels, ns in workloads):
                out.append(f"{r['kind']} {r['metadata']['name']!r}: its selector {r['spec']['selector']['matchLabels']} matches no workload in namespace {_ns(r)}")
    return out


def signature(listeners: list[dict[str, Any]]) -> str:
    """The security part of listeners (chain matches, transport sockets, RBAC and JWT filters): when it
    changes, connections accepted on the old chains must drain before the new rules hold for every request."""
    names = {"envoy.filters.http.rbac", "envoy.filters.network.rbac", JWT_FILTER}
    out = []
    for lis in listeners:
        for chain in lis.get("filter_chains", []):
            parts: list[Any] = [chain.get("filter_chain_match"), chain.get("transport_socket")]
            for f in chain.get("filters", []):
                parts.append(f if f.get("name") in names else None)
                parts += [hf for hf in (f.get("typed_config") or {}).get("http_filters", []) if hf.get("name") in names]
            out.append(parts)
    return json.dumps(out, sort_keys=True)
