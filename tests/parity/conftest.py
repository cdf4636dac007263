"""Parity tests: each pins one Istio 1.31 behaviour that the local backend emulates.

Mark every test with the Istio source file and the function in it that it follows (written from that
source first, asserting Istio's result; see docs/parity.md, "How to add a behaviour")::

    @pytest.mark.istio("pilot/pkg/networking/core/route/retry/retry.go: ConvertPolicy")
    def test_default_retry_policy(): ...

The release tag is ``ISTIO_REF``; ``test_parity_table.py`` checks that every parity test names a function and
that docs/parity.md lists every marked test with its reference.
"""

from __future__ import annotations

import pytest

ISTIO_REF = "release-1.31"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/parity/" in str(item.fspath).replace("\\", "/") and not str(item.fspath).endswith("test_parity_table.py") \
                and item.get_closest_marker("istio") is None:
            raise pytest.UsageError(f"{item.nodeid}: a parity test must name its Istio source with @pytest.mark.istio('<path>.go: <Function>')")
