"""meshlab.topology: built-in patterns load, any pattern file loads, and every mistake is named precisely."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.errors import TopologyError
from meshlab.topology import builtin_patterns, load_topology, parse_topology

SOURCE = Path("test.yaml")


def valid_doc() -> dict[str, Any]:
    """Two clusters, one mesh, one network (cluster2 remote of cluster1): the base every error case mutates."""
    return {
        "name": "test-pattern",
        "meshes": {"mesh1": {"trustDomain": "cluster.local"}},
        "networks": {"network1": {}},
        "clusters": {
            "cluster1": {
                "mesh": "mesh1",
                "network": "network1",
                "region": "region1",
                "zone": "zone1",
                "podCIDR": "10.10.0.0/16",
                "serviceCIDR": "10.255.10.0/24",
                "controlPlane": "primary",
            },
            "cluster2": {
                "mesh": "mesh1",
                "network": "network1",
                "region": "region2",
                "zone": "zone2",
                "podCIDR": "10.20.0.0/16",
                "serviceCIDR": "10.255.20.0/24",
                "controlPlane": {"remoteOf": "cluster1"},
            },
        },
    }


def mutated(**changes: Any) -> dict[str, Any]:
    """valid_doc() with dotted paths set (value ``DELETE`` removes the key)."""
    doc = copy.deepcopy(valid_doc())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        d = doc
        for p in parents:
            d = d[p]
        if value is DELETE:
            del d[last]
        else:
            d[last] = value
    return doc


DELETE = object()


def fails(doc: Any, *fragments: str) -> TopologyError:
    """parse_topology must raise TopologyError naming the file and every fragment, with a hint."""
    with pytest.raises(TopologyError) as info:
        parse_topology(doc, source=SOURCE)
    err = info.value
    assert type(err) is TopologyError
    assert "test.yaml" in err.message
    for f in fragments:
        assert f in err.message, f"{f!r} not in {err.message!r}"
    assert err.hint and err.hint.strip()
    return err


# ---- the valid base and the built-in patterns --------------------------------------------------
def test_valid_doc_parses() -> None:
    t = parse_topology(valid_doc(), source=SOURCE)
    assert list(t.clusters) == ["cluster1", "cluster2"]
    assert t.source == SOURCE
    assert t.title == "test-pattern"  # defaults to the name


def test_builtin_patterns_listed() -> None:
    assert builtin_patterns() == ["flat-network", "multi-primary", "separate-control-planes", "separate-networks", "separate-roots"]


def test_flat_network() -> None:
    t = load_topology("flat-network")
    assert t.name == "flat-network"
    assert list(t.networks) == ["network1"]
    assert {c.network for c in t.clusters.values()} == {"network1"}
    c1, c2 = t.clusters["cluster1"], t.clusters["cluster2"]
    assert c1.is_primary and c1.remote_of is None and c1.control_plane == "cluster1"
    assert not c2.is_primary and c2.remote_of == "cluster1" and c2.control_plane == "cluster1"
    assert t.control_planes == ["cluster1"]
    assert [c.name for c in t.served_by("cluster1")] == ["cluster1", "cluster2"]
    assert t.same_network("cluster1", "cluster2")
    assert c1.locality == "region1/zone1" and c2.locality == "region2/zone2"
    assert c1.pod_cidr == ipaddress.IPv4Network("10.10.0.0/16")
    assert c2.service_cidr == ipaddress.IPv4Network("10.255.20.0/24")
    assert t.trust_domain("cluster2") == "cluster.local"
    assert t.source.name == "flat-network.yaml"


def test_separate_networks() -> None:
    t = load_topology("separate-networks")
    assert list(t.networks) == ["network1", "network2"]
    assert t.clusters["cluster1"].network == "network1"
    assert t.clusters["cluster2"].network == "network2"
    assert not t.same_network("cluster1", "cluster2")
    assert t.clusters["cluster2"].remote_of == "cluster1"
    assert t.control_planes == ["cluster1"]
    assert [c.name for c in t.served_by("cluster1")] == ["cluster1", "cluster2"]


def test_separate_control_planes() -> None:
    t = load_topology("separate-control-planes")
    assert t.control_planes == ["cluster1", "cluster2"]
    assert all(c.is_primary for c in t.clusters.values())
    assert list(t.meshes) == ["mesh1", "mesh2"]
    assert t.clusters["cluster1"].mesh == "mesh1" and t.clusters["cluster2"].mesh == "mesh2"
    assert t.meshes["mesh1"].root_ca == t.meshes["mesh2"].root_ca == "shared-root"
    assert [c.name for c in t.served_by("cluster1")] == ["cluster1"]
    assert [c.name for c in t.served_by("cluster2")] == ["cluster2"]
    assert len(t.networks) == 2


def test_multi_primary() -> None:
    """Two primaries of one mesh on two networks: each istiod reads the other's API server (remote secrets
    both ways); pattern 3's two meshes exchange none; a primary reads its remotes."""
    t = load_topology("multi-primary")
    assert t.control_planes == ["cluster1", "cluster2"] and list(t.meshes) == ["mesh1"]
    assert not t.same_network("cluster1", "cluster2")
    assert [c.name for c in t.served_by("cluster1")] == ["cluster1"], "each istiod configures only its own cluster's proxies"
    assert t.remote_secrets("cluster1") == ["cluster2"] and t.remote_secrets("cluster2") == ["cluster1"]
    assert t.multi_primary("cluster1") and t.multi_primary("cluster2")
    scp = load_topology("separate-control-planes")
    assert scp.remote_secrets("cluster1") == [] and not scp.multi_primary("cluster1")
    sn = load_topology("separate-networks")
    assert sn.remote_secrets("cluster1") == ["cluster2"] and not sn.multi_primary("cluster1")


def test_root_ca_defaults_to_root() -> None:
    assert load_topology("flat-network").meshes["mesh1"].root_ca == "root"


def test_load_three_clusters_from_path(tmp_path: Path) -> None:
    doc = valid_doc()
    doc["name"] = "three-flat"
    doc["clusters"]["cluster3"] = {
        "mesh": "mesh1",
        "network": "network1",
        "region": "region3",
        "zone": "zone3",
        "podCIDR": "10.30.0.0/16",
        "serviceCIDR": "10.255.30.0/24",
        "controlPlane": {"remoteOf": "cluster1"},
    }
    path = tmp_path / "three.yaml"
    path.write_text(yaml.safe_dump(doc))
    for arg in (path, str(path)):
        t = load_topology(arg)
        assert t.name == "three-flat"
        assert t.source == path
        assert list(t.clusters) == ["cluster1", "cluster2", "cluster3"]
        assert [c.name for c in t.served_by("cluster1")] == ["cluster1", "cluster2", "cluster3"]
        assert t.served_by("cluster2") == []
        assert t.control_planes == ["cluster1"]
        assert t.clusters["cluster3"].locality == "region3/zone3"


def test_cluster_lookup_unknown() -> None:
    t = load_topology("flat-network")
    with pytest.raises(TopologyError) as info:
        t.cluster("cluster9")
    assert "cluster9" in info.value.message
    assert "cluster1, cluster2" in (info.value.hint or "")


# ---- loading errors ---------------------------------------------------------------------------
def test_unknown_pattern_name() -> None:
    with pytest.raises(TopologyError) as info:
        load_topology("no-such-pattern")
    err = info.value
    assert type(err) is TopologyError
    assert "no-such-pattern" in err.message
    assert err.hint
    for name in ("flat-network", "separate-networks", "separate-control-planes"):
        assert name in str(err)


def test_missing_yaml_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path / "absent.yaml")
    assert "absent.yaml" in info.value.message and info.value.hint


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nclusters: [a, b\n  c: {\n")
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    err = info.value
    assert type(err) is TopologyError
    assert str(path) in err.message
    assert "not valid YAML" in err.message
    assert "line" in err.message  # the position, so the learner can find it
    assert err.hint


def test_error_from_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(mutated(clusters__cluster2__podCIDR="10.10.0.0/16")))
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert str(path) in info.value.message
    assert "clusters.cluster2.podCIDR" in info.value.message


# ---- structural errors -------------------------------------------------------------------------
def test_document_not_a_mapping() -> None:
    fails(["a", "b"], "(document)")


def test_unknown_top_level_key() -> None:
    doc = valid_doc()
    doc["cluster"] = {}
    err = fails(doc, "'cluster'", "unknown field")
    assert "clusters" in (err.hint or "")


def test_unknown_cluster_key() -> None:
    err = fails(mutated(clusters__cluster2__podCidr="10.20.0.0/16"), "clusters.cluster2.podCidr", "unknown field")
    assert "podCIDR" in (err.hint or "")


def test_unknown_mesh_key() -> None:
    fails(mutated(meshes__mesh1__trustdomain="x"), "meshes.mesh1.trustdomain")


def test_missing_cluster_field() -> None:
    fails(mutated(clusters__cluster1__region=DELETE), "clusters.cluster1.region")


def test_no_meshes() -> None:
    fails(mutated(meshes={}), "'meshes'")


def test_unknown_mesh() -> None:
    fails(mutated(clusters__cluster2__mesh="mesh9"), "clusters.cluster2.mesh", "mesh9")


def test_unknown_network() -> None:
    err = fails(mutated(clusters__cluster2__network="network9"), "clusters.cluster2.network", "network9")
    assert "network1" in (err.hint or "")


# ---- address ranges ----------------------------------------------------------------------------
def test_overlapping_pod_cidrs_same_network() -> None:
    err = fails(mutated(clusters__cluster2__podCIDR="10.10.128.0/17"), "clusters.cluster2.podCIDR", "cluster1", "cluster2")
    assert "clusters.cluster1.podCIDR" in err.message
    assert "network1" in err.message


def test_overlapping_service_vs_pod_cidr_across_clusters() -> None:
    # cluster2's service range falls inside cluster1's pod range
    err = fails(mutated(clusters__cluster2__serviceCIDR="10.10.5.0/24"), "clusters.cluster2.serviceCIDR", "cluster1")
    assert "clusters.cluster1.podCIDR" in err.message


def test_overlapping_pod_vs_service_cidr_across_clusters() -> None:
    # cluster2's pod range covers cluster1's service range (but not cluster2's own 10.255.20.0/24)
    err = fails(mutated(clusters__cluster2__podCIDR="10.255.8.0/21"), "clusters.cluster2.podCIDR")
    assert "clusters.cluster1.serviceCIDR" in err.message


def test_overlap_within_one_cluster() -> None:
    fails(mutated(clusters__cluster1__serviceCIDR="10.10.1.0/24"), "clusters.cluster1.serviceCIDR", "podCIDR")


def test_overlap_allowed_on_different_networks() -> None:
    doc = mutated(clusters__cluster2__podCIDR="10.10.0.0/16", clusters__cluster2__serviceCIDR="10.255.10.0/24")
    doc["networks"]["network2"] = {}
    doc["clusters"]["cluster2"]["network"] = "network2"
    t = parse_topology(doc, source=SOURCE)
    assert t.clusters["cluster1"].pod_cidr == t.clusters["cluster2"].pod_cidr
    assert not t.same_network("cluster1", "cluster2")


@pytest.mark.parametrize("cidr", ["10.10.0.0/33", "10.10.0.1/16", "not-a-cidr", "fd00::/64"])
def test_invalid_cidr(cidr: str) -> None:
    err = fails(mutated(clusters__cluster2__podCIDR=cidr), "clusters.cluster2.podCIDR", cidr)
    assert "10.10.0.0/16" in (err.hint or "")


@pytest.mark.parametrize("key", ["podCIDR", "serviceCIDR"])
@pytest.mark.parametrize(("cidr", "what"), [
    ("127.10.0.0/16", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.1.0.0/16", "multicast"),
    ("240.0.0.0/16", "reserved"),
    ("0.0.0.0/8", "this network"),
    ("10.250.0.0/24", "underlay"),
    ("10.250.0.0/16", "underlay"),  # a range that contains the underlay overlaps it too
])  # fmt: skip
def test_reserved_ranges_refused(key: str, cidr: str, what: str) -> None:
    err = fails(mutated(**{f"clusters__cluster2__{key}": cidr}), f"clusters.cluster2.{key}", cidr, what)
    assert "10.10.0.0/16" in (err.hint or "")


@pytest.mark.parametrize("cidr", ["10.20.0.0/30", "10.20.0.0/25"])
def test_pod_cidr_too_small(cidr: str) -> None:
    err = fails(mutated(clusters__cluster2__podCIDR=cidr), "clusters.cluster2.podCIDR", cidr, "too small")
    assert "/24" in (err.hint or "")


def test_smallest_pod_cidr_accepted() -> None:
    t = parse_topology(mutated(clusters__cluster2__podCIDR="10.20.0.0/24"), source=SOURCE)
    assert t.clusters["cluster2"].pod_cidr.prefixlen == 24


def test_cidr_not_a_string() -> None:
    fails(mutated(clusters__cluster2__serviceCIDR=10), "clusters.cluster2.serviceCIDR")


# ---- control planes ----------------------------------------------------------------------------
def test_remote_of_missing_primary() -> None:
    err = fails(mutated(clusters__cluster2__controlPlane={"remoteOf": "cluster9"}), "clusters.cluster2.controlPlane.remoteOf", "cluster9")
    assert "cluster1" in (err.hint or "")


def test_remote_of_a_remote() -> None:
    doc = valid_doc()
    doc["clusters"]["cluster3"] = {
        **doc["clusters"]["cluster2"],
        "podCIDR": "10.30.0.0/16",
        "serviceCIDR": "10.255.30.0/24",
        "controlPlane": {"remoteOf": "cluster2"},
    }
    fails(doc, "clusters.cluster3.controlPlane.remoteOf", "cluster2", "remote")


def test_remote_of_itself() -> None:
    fails(mutated(clusters__cluster2__controlPlane={"remoteOf": "cluster2"}), "clusters.cluster2.controlPlane.remoteOf")


def test_remote_of_primary_in_another_mesh() -> None:
    doc = valid_doc()
    doc["meshes"]["mesh2"] = {}
    doc["clusters"]["cluster2"]["mesh"] = "mesh2"
    fails(doc, "clusters.cluster2.controlPlane.remoteOf", "mesh1", "mesh2")


def test_mesh_without_primary() -> None:
    doc = valid_doc()
    doc["meshes"]["mesh2"] = {"trustDomain": "mesh2.local"}
    fails(doc, "meshes.mesh2", "no primary")


@pytest.mark.parametrize("value", ["secondary", None, {"remoteOf": 3}, {"remoteOf": "cluster1", "extra": 1}, {"primary": True}])
def test_bad_control_plane(value: Any) -> None:
    fails(mutated(clusters__cluster2__controlPlane=value), "clusters.cluster2.controlPlane")


# ---- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["Cluster_1", "c" * 64, "-cluster", "cluster-", "clus.ter"])
def test_cluster_name_not_dns_label(bad: str) -> None:
    doc = valid_doc()
    doc["clusters"][bad] = doc["clusters"].pop("cluster2")
    err = fails(doc, f"clusters.{bad}", "DNS-1123")
    assert "63" in (err.hint or "")


def test_63_char_name_is_fine() -> None:
    doc = valid_doc()
    name = "c" * 63
    doc["clusters"][name] = doc["clusters"].pop("cluster2")
    assert name in parse_topology(doc, source=SOURCE).clusters


@pytest.mark.parametrize(
    "field,value",
    [("name", "My_Pattern"), ("clusters.cluster1.region", "Region1"), ("clusters.cluster2.zone", "zone 2")],
)
def test_other_names_not_dns_label(field: str, value: str) -> None:
    fails(mutated(**{field.replace(".", "__"): value}), field, "DNS-1123")


def test_network_name_not_dns_label() -> None:
    doc = valid_doc()
    doc["networks"]["Net_1"] = {}
    fails(doc, "networks.Net_1")


def test_name_with_trailing_newline_rejected() -> None:
    doc = valid_doc()
    doc["clusters"]["cluster3\n"] = {
        **doc["clusters"]["cluster2"],
        "podCIDR": "10.30.0.0/16",
        "serviceCIDR": "10.255.30.0/24",
    }
    fails(doc, "clusters.cluster3")
