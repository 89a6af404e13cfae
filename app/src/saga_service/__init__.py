"""Reference CQRS + Saga order service deployed by the saga-stack chart."""

__version__ = "0.1.0"
