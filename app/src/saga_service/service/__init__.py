"""Use cases: the saga's steps and the commands that start or feed them (orchestrator), and
the lease sweep that resumes what a dead process left (recovery). They decide with domain/
and act through adapters/; nothing here knows HTTP or Kafka messages."""
