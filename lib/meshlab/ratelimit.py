"""A global rate-limit service that speaks Envoy's RLS v3 gRPC API (``envoy.service.ratelimit.v3``).

Envoy's ``envoy.filters.http.ratelimit`` filter asks a rate-limit service, for each request, whether
the request's *descriptors* (e.g. ``[("destination", "helloworld")]``) are over their limit. One
service process holds one counter per descriptor, so every proxy that asks it -- sidecars in either
cluster -- shares one limit. This is a small, real gRPC server (generated code from PyPI's
``xds-protos``, served with ``grpcio``) with fixed-window counters, like the reference
implementation (envoyproxy/ratelimit) without its Redis:

    python -m meshlab.ratelimit --listen 10.10.0.12:8081 \\
        --rules '[{"key": "destination", "value": "helloworld", "requests_per_unit": 10, "unit": "MINUTE"}]'

Each decision is logged as one JSON line (``decision``, ``descriptors``, ``hits``, ``domain``), so a
lab can count them; the sample app never sees a limited request.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from .errors import MeshlabError

UNITS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}


@dataclass(frozen=True)
class Rule:
    """A limit on the requests whose descriptor has entry ``key`` (= ``value``, when given)."""

    key: str
    requests_per_unit: int
    unit: str = "MINUTE"
    value: str | None = None

    def matches(self, entries: list[tuple[str, str]]) -> bool:
        return any(k == self.key and (self.value is None or v == self.value) for k, v in entries)


def rules_from(data: list[dict[str, Any]]) -> list[Rule]:
    out = []
    for i, r in enumerate(data):
        unit = str(r.get("unit", "MINUTE")).upper()
        if unit not in UNITS or "key" not in r or int(r.get("requests_per_unit", -1)) < 0:
            raise MeshlabError(
                f"rate-limit rule {i} is invalid: {r}",
                'write {"key": "destination", "value": "helloworld", "requests_per_unit": 10, "unit": "MINUTE"} '
                f"(unit one of {', '.join(UNITS)})",
            )
        out.append(Rule(str(r["key"]), int(r["requests_per_unit"]), unit, r.get("value")))
    return out


class Limiter:
    """Fixed windows per (domain, rule, descriptor): the window starts at a multiple of the unit."""

    def __init__(self, rules: list[Rule], clock: Any = time.time) -> None:
        self.rules = rules
        self.clock = clock
        self.counts: dict[tuple[str, int, tuple[tuple[str, str], ...], int], int] = {}
        self.lock = threading.Lock()

    def hit(self, domain: str, entries: list[tuple[str, str]], hits: int = 1) -> list[tuple[Rule | None, bool, int, int]]:
        """For one descriptor: (matching rule, over limit?, remaining, seconds until the window resets)."""
        now = self.clock()
        results: list[tuple[Rule | None, bool, int, int]] = []
        for i, rule in enumerate(self.rules):
            if not rule.matches(entries):
                continue
            unit = UNITS[rule.unit]
            window = int(now // unit)
            key = (domain, i, tuple(entries), window)
            with self.lock:
                self.counts[key] = self.counts.get(key, 0) + hits
                used = self.counts[key]
                for old in [k for k in self.counts if k[3] < window]:  # forget past windows
                    del self.counts[old]
            results.append((rule, used > rule.requests_per_unit, max(rule.requests_per_unit - used, 0), int((window + 1) * unit - now) + 1))
        return results or [(None, False, 0, 0)]


def serve(listen: str, rules: list[Rule]) -> None:
    """Serve ShouldRateLimit on ``listen`` (host:port) until SIGTERM."""
    import grpc
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

    limiter = Limiter(rules)
    R = rls_pb2.RateLimitResponse

    class Service(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
        def ShouldRateLimit(self, request: Any, context: Any) -> Any:
            statuses = []
            overall = R.OK
            for d in request.descriptors:
                entries = [(e.key, e.value) for e in d.entries]
                for rule, over, remaining, reset in limiter.hit(request.domain, entries, request.hits_addend or 1):
                    st = R.DescriptorStatus(code=R.OVER_LIMIT if over else R.OK, limit_remaining=remaining)
                    if rule is not None:
                        st.current_limit.requests_per_unit = rule.requests_per_unit
                        st.current_limit.unit = getattr(R.RateLimit, rule.unit)
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
    p.add_argument("--rules", required=True, help="JSON list of rules")
    a = p.parse_args(argv)
    try:
        serve(a.listen, rules_from(json.loads(a.rules)))
    except MeshlabError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
