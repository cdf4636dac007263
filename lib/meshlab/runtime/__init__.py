"""The shared runtime: what both backends and the Wasm, mesh and bench tools run on this machine.

- :mod:`.procs`   recorded processes (started, waited for, stopped; nothing left behind)
- :mod:`.envoy`   the Envoy binary, its bootstrap, the xDS files it reads, its admin API
- :mod:`.agent`   the emulated istio-agent's Wasm half: fetch, verify and cache modules, rewrite ECDS
- :mod:`.apps`    the sample apps (helloworld, curl's server side), started as ``python -m meshlab.runtime.apps``
- :mod:`.client`  the in-namespace HTTP client behind ``lab.call``
- :mod:`.net`     network modes: netns (root), userns (an unprivileged holder process), loopback
"""
