"""--metrics-bind: the drain's metrics for Prometheus. Imported only with that option, so
that without it prometheus_client is never imported."""
