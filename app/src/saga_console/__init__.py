"""The console of issue 16, a page to look at a saga-stack release: its dashboards drawn
straight from Prometheus and its recent sagas from the app's HTTP API (GET /sagas).

So far only `dashboards` (the chart's Grafana dashboards as panels and PromQL); the server
comes later. Like the load generator, the console is a client: it imports nothing of
saga_service but its version (tests/unit/app/test_layers.py).
"""
