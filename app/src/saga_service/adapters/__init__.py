"""What the service talks to: PostgreSQL (postgres/: pool, command-side and query-side
SQL, migrations), Kafka clients and topics, the Redis stock locks, and the outbox relay
that moves committed events from Postgres to Kafka."""
