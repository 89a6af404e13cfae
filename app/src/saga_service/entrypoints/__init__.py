"""What drives the service: the HTTP API, the Kafka consumer of saga events and the
`saga-service` command line."""
