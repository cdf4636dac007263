"""Parity tests: each pins one Istio 1.31 behaviour that the local backend emulates.

Mark every test with the Istio source file it follows::

    @pytest.mark.istio("pilot/pkg/networking/core/route/retry/retry.go")
    def test_default_retry_policy(): ...

The release tag is ``ISTIO_REF``; ``test_parity_table.py`` checks that docs/parity.md lists every
marked test and every source.
"""

from __future__ import annotations

import pytest

ISTIO_REF = "release-1.31"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/parity/" in str(item.fspath).replace("\\", "/") and item.name != "test_every_parity_test_is_in_the_table" \
                and item.get_closest_marker("istio") is None:
            raise pytest.UsageError(f"{item.nodeid}: a parity test must name its Istio source with @pytest.mark.istio('<path>')")
