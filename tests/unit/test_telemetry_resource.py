"""The Telemetry resource as the local backend accepts it: access logging with the built-in ``envoy``
provider; anything else is refused by name."""

from __future__ import annotations

import pytest

from meshlab.errors import ResourceError
from meshlab.resources import parse


def telemetry(logging: str) -> str:
    return f"apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: t, namespace: sample}}\nspec:\n  accessLogging: {logging}\n"


def test_telemetry_fields_outside_the_subset_are_refused_by_name() -> None:
    with pytest.raises(ResourceError, match="otel"):
        parse(telemetry("[{providers: [{name: otel}]}]"))
    with pytest.raises(ResourceError, match="filter"):
        parse(telemetry("[{providers: [{name: envoy}], filter: {expression: 'response.code >= 400'}}]"))
    with pytest.raises(ResourceError, match="metrics"):
        parse("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\nspec:\n  metrics: [{providers: [{name: prometheus}]}]\n")

