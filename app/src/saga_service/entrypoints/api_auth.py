"""Bearer tokens for the write endpoints (API_TOKENS): without one, 401; with one the
service does not know, 403. Reads, health and metrics never ask for a token."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Depends, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer


class AuthFailed(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def write_guard(tokens: list[str]) -> list[Any]:
    """The route dependencies of a write endpoint: none when no token is configured."""
    if not tokens:
        return []
    accepted = [t.encode() for t in tokens]
    bearer = HTTPBearer(
        auto_error=False,
        scheme_name="apiToken",
        description="one of the service's API_TOKENS, as `Authorization: Bearer <token>`",
    )

    async def require_token(
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise AuthFailed(
                401, "unauthorized", "this endpoint needs Authorization: Bearer <token>"
            )
        given = credentials.credentials.encode()
        # Compare with every token, in constant time each: no early exit tells which is near.
        matches = [hmac.compare_digest(given, token) for token in accepted]
        if not any(matches):
            raise AuthFailed(403, "forbidden", "the bearer token is not one this service accepts")

    return [Depends(require_token)]
