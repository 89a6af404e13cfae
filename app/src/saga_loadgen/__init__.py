"""`saga-service loadgen`: an open-loop load generator for the order API (see runner)."""
