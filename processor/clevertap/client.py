"""The CleverTap edge: one aiohttp session, connection pooling, HTTP status → typed error.

This module decides nothing about retries or dead letters; it reports what CleverTap said, by type:
:class:`RetriableRequestError` (429, 5xx, timeouts, connection errors, an unreadable 200), :class:`BadRequestError`
(400/413: a record in the request is malformed), :class:`CredentialsError` (401/403, or an endpoint that does not
exist: every request would fail the same way).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

from processor.clevertap.payloads import (
    UploadOutcome,
    delete_body,
    error_text,
    parse_upload_response,
    retry_after_seconds,
    upload_body,
)
from processor.errors import BadRequestError, CredentialsError, RetriableRequestError
from processor.settings import Secret

UPLOAD_PATH = "/1/upload"
DELETE_PATH = "/1/delete/profiles.json"

# Called after every request: (endpoint, HTTP status or 0 for no answer, seconds taken).
RequestObserver = Callable[[str, int, float], None]


class ClevertapClient:
    """Sends uploads and deletes. Use as an async context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        account_id: str,
        passcode: Secret,
        *,
        max_connections: int = 10,
        timeout_s: float = 30.0,
        observer: RequestObserver | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {
            "X-CleverTap-Account-Id": account_id,
            "X-CleverTap-Passcode": passcode.reveal(),
            "Content-Type": "application/json; charset=utf-8",
        }
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._observer = observer
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ClevertapClient:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=self._max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=self._headers, raise_for_status=False
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def upload(self, records: Sequence[dict[str, Any]]) -> UploadOutcome:
        """POST /1/upload; returns which records CleverTap refused (their 0-based positions and codes)."""
        status, body = await self._post(UPLOAD_PATH, upload_body(records))
        try:
            return parse_upload_response(body, len(records))
        except ValueError as exc:
            raise RetriableRequestError(f"CleverTap upload answer unreadable: {exc}", status=status) from exc

    async def delete(self, id_key: str, values: Sequence[str]) -> None:
        """POST /1/delete/profiles.json; returns when CleverTap accepted the deletion of every id."""
        _, body = await self._post(DELETE_PATH, delete_body(id_key, values))
        # The success body is undocumented; an explicit failure inside a 2xx still counts as a refusal.
        if body.strip().startswith(b"{") and b'"fail"' in body:
            raise BadRequestError(f"CleverTap refused the deletion: {error_text(body)}", status=200)

    async def _post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        if self._session is None:
            self.open()
        assert self._session is not None
        started = time.perf_counter()
        status = 0
        try:
            async with self._session.post(self._base_url + path, data=payload) as response:
                status = response.status
                body = await response.read()
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RetriableRequestError(f"CleverTap {path}: {type(exc).__name__}: {exc}") from exc
        finally:
            if self._observer is not None:
                self._observer(path, status, time.perf_counter() - started)
        if 200 <= status < 300:
            return status, body
        message = f"CleverTap {path} answered HTTP {status}: {error_text(body)}"
        if status in (401, 403):
            raise CredentialsError(message, status=status)
        if status in (404, 405):
            raise CredentialsError(message + " (check CLEVERTAP_REGION / CLEVERTAP_BASE_URL)", status=status)
        if status in (400, 413, 422):
            raise BadRequestError(message, status=status)
        raise RetriableRequestError(message, status=status, retry_after=retry_after)
