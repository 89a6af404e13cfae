"""Alembic migrations (raw SQL); run them with `saga-service migrate`."""
