"""Cross-cutting: Prometheus metrics, JSON-lines logs and the W3C trace context that every
layer reports through."""
