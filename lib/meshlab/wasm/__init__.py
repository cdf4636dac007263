"""WebAssembly filters for Envoy: build them, read their proxy-wasm ABI, run them in a standalone Envoy.

    from meshlab import wasm
    path = wasm.build("wasm-filters/add-header")           # -> .../build/filter.wasm
    print(wasm.inspect(path))                               # ABI version, callbacks, host functions
    with wasm.envoy() as e:                                 # Envoy + helloworld upstream
        e.load(path, {"name": "x-hello", "value": "hi"}, root_id="add_header")
        e.request("/hello")

    hub = wasm.hub.up()                                     # an OCI registry with user accounts
    hub.add_user("alice"); hub.push(path, "wasm/add-header:v1", user="alice")

Modules: ``build`` (AssemblyScript, C), ``inspect`` (the wasm binary and the ABI check), ``abi`` (the
proxy-wasm spec tables), ``standalone`` (Envoy with a hot-swappable Wasm filter), ``handmade``
(modules assembled byte by byte), ``oci`` (modules as OCI images, the distribution API), ``hub``
(the registry meshlab runs), ``publish`` (a module into the hub), ``cli`` (``meshlab wasm ...``), ``bench``.
Istio's own handling of a module lives with the emulated control plane (:mod:`meshlab.controlplane.extensions`:
translate like istiod) and the runtime (:mod:`meshlab.runtime.agent`: fetch like istio-agent).
"""

from . import hub, oci
from .build import BuildResult, FilterInfo, build, build_all, build_filter, filter_info, filters
from .inspect import Report, inspect
from .standalone import WasmEnvoy, down_all, envoy

__all__ = [
    "BuildResult", "FilterInfo", "Report", "WasmEnvoy",
    "build", "build_all", "build_filter", "down_all", "envoy", "filter_info", "filters", "hub", "inspect", "oci",
]  # fmt: skip
