"""A global rate-limit service that speaks Envoy's RLS v3 gRPC API (``envoy.service.ratelimit.v3``).

Envoy's ``envoy.filters.http.ratelimit`` filter asks a rate-limit service, for each request, whether
the request's *descriptors* (e.g. ``[("PATH", "/hello")]``) are over their limit. One service process
holds one counter per descriptor, so every proxy that asks it -- sidecars in either cluster -- shares
one limit. This is a small, real gRPC server (generated code from PyPI's ``xds-protos``, served with
``grpcio``) with fixed-window counters, configured like the reference implementation
(envoyproxy/ratelimit, which Istio's ``samples/ratelimit`` deploys) but without its Redis:

    domain: helloworld
    descriptors:
    - key: PATH
      value: /hello
      rate_limit: {unit: minute, requests_per_unit: 20}
    - key: PATH                      # any other path
      rate_limit: {unit: minute, requests_per_unit: 100}

    python -m meshlab.ratelimit --listen 10.10.0.12:8081 --config config.yaml

The file is read again whenever it changes. A descriptor matches a rule with its key and value, else
the rule with its key and no value; nested ``descriptors`` match the descriptor's next entry. Each
decision is logged as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import MeshlabError

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
DEFAULT_CONFIG = """\
# meshlab's rate-limit service: envoyproxy/ratelimit's config format (domain, descriptors, rate_limit)
domain: helloworld
descriptors:
- key: PATH
  value: /hello
  rate_limit: {unit: hour, requests_per_unit: 20}
"""


@dataclass
class Rule:
    """One descriptor rule: ``key`` (= ``value`` when given), its limit, and rules for the next entry."""

    key: str
    value: str | None = None
    requests_per_unit: int | None = None
    unit: str = "minute"
    children: list["Rule"] = field(default_factory=list)


def rules_from(items: list[dict[str, Any]], where: str = "descriptors") -> list[Rule]:
    out = []
    for i, d in enumerate(items or []):
        at = f"{where}[{i}]"
        if not isinstance(d, dict) or "key" not in d:
            raise MeshlabError(f"rate-limit config {at} has no key: {d}", "write - key: PATH, value: /hello, rate_limit: {unit: minute, requests_per_unit: 10}")
        rl = d.get("rate_limit") or {}
        unit = str(rl.get("unit", "minute")).lower()
        if rl and (unit not in UNITS or not isinstance(rl.get("requests_per_unit"), int) or rl["requests_per_unit"] < 0):
            raise MeshlabError(f"rate-limit config {at}.rate_limit is invalid: {rl}", f"give requests_per_unit >= 0 and unit one of {', '.join(UNITS)}")
        out.append(Rule(str(d["key"]), None if d.get("value") is None else str(d["value"]), rl.get("requests_per_unit"), unit,
                        rules_from(d.get("descriptors", []), f"{at}.descriptors")))  # fmt: skip
    return out


def load_config(text: str) -> tuple[str, list[Rule]]:
    doc = yaml.safe_load(text) or {}
    if not isinstance(doc, dict) or not doc.get("domain"):
        raise MeshlabError("the rate-limit config needs a domain", "start it with `domain: <the domain in Envoy's ratelimit filter>`")
    return str(doc["domain"]), rules_from(doc.get("descriptors", []))


def match(rules: list[Rule], entries: list[tuple[str, str]]) -> tuple[Rule | None, int]:
    """The rule for a descriptor's entries (value-specific before key-only), and how many entries it used."""
    found: tuple[Rule | None, int] = (None, 0)
    for depth, (k, v) in enumerate(entries):
        rule = next((r for r in rules if r.key == k and r.value == v), None) or next((r for r in rules if r.key == k and r.value is None), None)
        if rule is None:
            break
        if rule.requests_per_unit is not None:
            found = (rule, depth + 1)
        rules = rule.children
    return found


class Limiter:
    """Fixed windows per (domain, matched entries): the window starts at a multiple of the unit."""

    def __init__(self, domain: str, rules: list[Rule], clock: Any = time.time) -> None:
        self.domain, self.rules, self.clock = domain, rules, clock
        self.counts: dict[tuple[tuple[tuple[str, str], ...], int], int] = {}
        self.lock = threading.Lock()

    def hit(self, domain: str, entries: list[tuple[str, str]], hits: int = 1) -> tuple[Rule | None, bool, int, int]:
        """For one descriptor: (its rule, over the limit?, remaining, seconds until the window resets)."""
        rule, depth = match(self.rules, entries) if domain == self.domain else (None, 0)
        if rule is None or rule.requests_per_unit is None:
            return None, False, 0, 0
        unit = UNITS[rule.unit]
        now = self.clock()
        window = int(now // unit)
        key = (tuple(entries[:depth]), window)
        with self.lock:
            self.counts[key] = used = self.counts.get(key, 0) + hits
            for old in [k for k in self.counts if k[1] != window and k[0] == key[0]]:
                del self.counts[old]
        return rule, used > rule.requests_per_unit, max(rule.requests_per_unit - used, 0), int((window + 1) * unit - now) + 1


def serve(listen: str, config: Path) -> None:
    """Serve ShouldRateLimit on ``listen`` (host:port) until SIGTERM, with the rules in ``config``."""
    import grpc
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

    loaded = {"mtime": config.stat().st_mtime_ns, "limiter": Limiter(*load_config(config.read_text()))}
    R = rls_pb2.RateLimitResponse

    def limiter() -> Limiter:
        """The current rules: a changed file is read again (a broken one is reported, the old rules stay)."""
        mtime = config.stat().st_mtime_ns
        if mtime != loaded["mtime"]:
            loaded["mtime"] = mtime
            try:
                loaded["limiter"] = Limiter(*load_config(config.read_text()))
                print(json.dumps({"config": "reloaded"}), flush=True)
            except (MeshlabError, yaml.YAMLError) as e:
                print(json.dumps({"config": f"rejected: {e}"}), flush=True)
        return loaded["limiter"]  # type: ignore[return-value]

    class Service(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
        def ShouldRateLimit(self, request: Any, context: Any) -> Any:
            statuses = []
            overall = R.OK
            lim = limiter()
            for d in request.descriptors:
                entries = [(e.key, e.value) for e in d.entries]
                rule, over, remaining, reset = lim.hit(request.domain, entries, request.hits_addend or 1)
                st = R.DescriptorStatus(code=R.OVER_LIMIT if over else R.OK, limit_remaining=remaining)
                if rule is not None:
                    st.current_limit.requests_per_unit = rule.requests_per_unit or 0
                    st.current_limit.unit = getattr(R.RateLimit, rule.unit.upper())
                    st.duration_until_reset.seconds = reset
                statuses.append(st)
                overall = R.OVER_LIMIT if over else overall
                print(json.dumps({"decision": "OVER_LIMIT" if over else "OK", "domain": request.domain,
                                  "descriptors": entries, "remaining": remaining}), flush=True)  # fmt: skip
            return R(overall_code=overall, statuses=statuses)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(Service(), server)
    if server.add_insecure_port(listen) == 0:
        raise MeshlabError(f"the rate-limit service cannot listen on {listen}", "is the address taken? `meshlab down`, then retry")
    server.start()
    print(f"listening on {listen}", flush=True)  # meshlab waits for this line
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=0.5).wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="meshlab-ratelimit", description="Envoy RLS v3 rate-limit service (gRPC)")
    p.add_argument("--listen", required=True, help="host:port")
    p.add_argument("--config", required=True, type=Path, help="rules in envoyproxy/ratelimit's config.yaml format")
    a = p.parse_args(argv)
    try:
        serve(a.listen, a.config)
    except MeshlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
