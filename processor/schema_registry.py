"""The Schema Registry edge: fetches writer schemas by id or GUID over HTTP (aiohttp) into the decoder's cache."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from processor.decode import RegistryDecoder, SchemaRef
from processor.errors import SchemaRegistryUnavailable
from processor.settings import Secret

log = logging.getLogger(__name__)


class SchemaRegistryClient:
    """Resolves schema references; a 404 marks the reference missing (its messages are dead-lettered)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, auth: Secret | None = None) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._auth: aiohttp.BasicAuth | None = None
        if auth is not None:
            user, _, password = auth.reveal().partition(":")
            self._auth = aiohttp.BasicAuth(user, password)

    async def fetch_into(self, decoder: RegistryDecoder, refs: set[SchemaRef]) -> None:
        """Fetch every reference; raises :class:`SchemaRegistryUnavailable` when the registry cannot answer."""
        await asyncio.gather(*(self._fetch_one(decoder, ref) for ref in refs))

    async def _fetch_one(self, decoder: RegistryDecoder, ref: SchemaRef) -> None:
        path = f"/schemas/ids/{ref.id}" if ref.id is not None else f"/schemas/guids/{ref.guid}"
        try:
            async with self._session.get(
                self._url + path,
                auth=self._auth,
                headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                if response.status == 404:
                    log.warning("schema %s is not in the Schema Registry; its messages go to the DLQ", ref)
                    decoder.missing.add(ref)
                    return
                if response.status != 200:
                    raise SchemaRegistryUnavailable(f"Schema Registry answered HTTP {response.status} for {path}")
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SchemaRegistryUnavailable(f"Schema Registry unreachable: {type(exc).__name__}") from exc
        schema_type = body.get("schemaType", "AVRO") if isinstance(body, dict) else None
        schema_text = body.get("schema") if isinstance(body, dict) else None
        if schema_type != "AVRO" or not isinstance(schema_text, str):
            log.warning("schema %s is not an Avro schema (%s); its messages go to the DLQ", ref, schema_type)
            decoder.missing.add(ref)
            return
        decoder.add(ref, schema_text)
