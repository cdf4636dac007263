"""Many learners on one host: two labs (two state directories, as two learners have) run the same pattern at
the same time in each network mode, without sharing an address, a port or a namespace name, and one
learner's ``down`` leaves the other's lab running."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from meshlab.lab import Lab
from meshlab.runtime import net
from meshlab.state import prefix_for

URL = "http://helloworld.sample:5000/hello"
MODES = [net.LOOPBACK, net.NETNS] if net.os.geteuid() == 0 else [net.LOOPBACK]
if net._userns_allowed():
    MODES.append(net.USERNS)


@pytest.mark.parametrize("mode", MODES)
def test_two_learners_side_by_side_and_one_down_leaves_the_other(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHLAB_NET_MODE", mode)
    homes = [Path(tempfile.mkdtemp(prefix="mlt")) for _ in range(2)]
    try:
        a = Lab.up("separate-networks", samples=True, home_dir=homes[0], quiet=True)
        b = Lab.up("separate-networks", samples=True, home_dir=homes[1], quiet=True)  # same pattern, same ports
        assert prefix_for(homes[0]) != prefix_for(homes[1])  # namespace names
        if mode == net.LOOPBACK:  # addresses: each lab its own 127.x block
            ips_a = {w.ip for w in a.backend.workloads}
            ips_b = {w.ip for w in b.backend.workloads}
            assert not ips_a & ips_b, f"two learners share addresses: {sorted(ips_a & ips_b)}"
        ext = [lab.external_https("external.meshlab.test") for lab in (a, b)]  # the HTTPS test server, twice
        assert (ext[0]["address"], ext[0]["port"]) != (ext[1]["address"], ext[1]["port"]) or mode != net.LOOPBACK
        for lab in (a, b):
            r = lab.call("curl", URL, cluster="cluster1", n=20)
            assert r.errors == 0 and r.clusters == {"cluster1", "cluster2"}, r.tally
        a.down(quiet=True)
        r = b.call("curl", URL, cluster="cluster1", n=20)
        assert r.errors == 0 and r.clusters == {"cluster1", "cluster2"}, f"the other learner's down broke this lab: {r.tally}"
        if mode == net.NETNS:
            assert not net.existing_namespaces(prefix_for(homes[0])) and net.existing_namespaces(prefix_for(homes[1]))
        b.down(quiet=True)
    finally:
        for h in homes:
            Lab.down_all(h, quiet=True)
            shutil.rmtree(h, ignore_errors=True)
