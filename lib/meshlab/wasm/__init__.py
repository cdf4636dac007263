"""WebAssembly filters for Envoy: build them, read their proxy-wasm ABI, run them in a standalone Envoy.

    from meshlab import wasm
    path = wasm.build("wasm-filters/add-header")           # -> .../build/filter.wasm
    print(wasm.inspect(path))                               # ABI version, callbacks, host functions
    with wasm.envoy() as e:                                 # Envoy + helloworld upstream
        e.load(path, {"name": "x-hello", "value": "hi"}, root_id="add_header")
        e.request("/hello")

Modules: ``build`` (AssemblyScript, C), ``inspect`` (the wasm binary and the ABI check), ``abi`` (the
proxy-wasm spec tables), ``standalone`` (Envoy with a hot-swappable Wasm filter), ``handmade``
(modules assembled byte by byte), ``cli`` (``meshlab wasm ...``), ``bench``.
"""

from .build import BuildResult, FilterInfo, build, build_all, build_filter, filter_info, filters
from .inspect import Report, inspect
from .standalone import WasmEnvoy, down_all, envoy

__all__ = [
    "BuildResult", "FilterInfo", "Report", "WasmEnvoy",
    "build", "build_all", "build_filter", "down_all", "envoy", "filter_info", "filters", "inspect",
]  # fmt: skip
