"""The API's one error shape: ``{"error": {"code", "message", "field"}}`` with a 4xx status.

Every refusal is an :class:`ApiError` raised where the problem is found; the app turns it
into the response. Messages name what was wrong and never echo a credential (the token is
compared, never quoted).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError"]


class ApiError(Exception):
    """A request the API refuses: HTTP ``status``, a stable machine ``code``, a message for
    people and the ``field`` it is about (a dotted path such as ``contacts[3].to``, or None
    for the request as a whole)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        """The JSON body of the response."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}

    @classmethod
    def invalid(cls, field: str | None, message: str) -> ApiError:
        """A 422: the JSON was read but a value is wrong (missing, ill-typed, malformed)."""
        return cls(422, "invalid", message, field)
