"""Backends realise a topology: ``local`` (Envoy processes in network namespaces) and ``kind`` (kind + Istio)."""
