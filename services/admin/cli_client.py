"""The admin API's client, used by every `keywarden keys|providers|admin credentials|admin
ceiling` command: one code path for the CLI and the API. httpx errors stay in this module.
"""

from __future__ import annotations

from typing import Any

import httpx

from keywarden.settings import Settings


class AdminClientError(Exception):
    """The admin API refused the request or could not be reached; `message` says why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AdminClient:
    """Calls the admin API at `url` with the admin credential `token`. Use as a context manager."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not token:
            raise AdminClientError(
                "no admin credential: set KEYWARDEN_ADMIN_TOKEN to a kwa_… credential "
                "(the first one comes from `keywarden admin bootstrap`)"
            )
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"authorization": f"Bearer {token}", "user-agent": "keywarden-cli"},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminClient:
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        return cls(settings.admin_url, token, timeout=settings.admin_http_timeout_seconds)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON answer; `AdminClientError` with the API's message otherwise."""
        try:
            response = self._http.request(
                method, path, json=body, params={k: v for k, v in (params or {}).items() if v}
            )
        except httpx.HTTPError as error:
            raise AdminClientError(
                f"cannot reach the admin API at {self.url} (KEYWARDEN_ADMIN_URL): "
                f"{type(error).__name__}"
            ) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success:
            return answer
        message = (
            answer.get("error", {}).get("message")
            if isinstance(answer, dict)
            else f"HTTP {response.status_code}"
        )
        raise AdminClientError(message or f"HTTP {response.status_code}", response.status_code)


__all__ = ["AdminClient", "AdminClientError"]
