"""A Schema Registry stand-in: a real aiohttp server answering the two lookups the processor makes.

``GET /schemas/ids/{id}`` and ``GET /schemas/guids/{guid}`` answer ``{"schema": "<schema JSON text>"}`` (plus
``schemaType`` for non-Avro schemas), or 404 with error code 40403 as the Confluent registry does. ``failing``
makes every lookup answer 503, to test that an unavailable registry pauses consumption instead of
dead-lettering records.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


class SchemaRegistryStandin:
    def __init__(self) -> None:
        self.by_id: dict[int, tuple[str, str]] = {}
        self.by_guid: dict[str, tuple[str, str]] = {}
        self.lookups: list[str] = []
        self.failing = False
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def register(self, schema_id: int, schema_text: str, guid: str | None = None, schema_type: str = "AVRO") -> None:
        self.by_id[schema_id] = (schema_text, schema_type)
        if guid is not None:
            self.by_guid[guid] = (schema_text, schema_type)

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the registry stand-in is not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/schemas/ids/{id}", self._by_id)
        app.router.add_get("/schemas/guids/{guid}", self._by_guid)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self._base_url = f"http://{host}:{sockets[0].getsockname()[1]}"
        return self._base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SchemaRegistryStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _answer(self, found: tuple[str, str] | None, what: str) -> web.Response:
        self.lookups.append(what)
        if self.failing:
            return web.json_response({"error_code": 50003, "message": "unavailable"}, status=503)
        if found is None:
            return web.json_response({"error_code": 40403, "message": "Schema not found"}, status=404)
        text, schema_type = found
        body: dict[str, Any] = {"schema": text}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        return web.json_response(body, content_type="application/vnd.schemaregistry.v1+json")

    async def _by_id(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        found = self.by_id.get(int(raw)) if raw.isdigit() else None
        return self._answer(found, f"id:{raw}")

    async def _by_guid(self, request: web.Request) -> web.Response:
        guid = request.match_info["guid"]
        return self._answer(self.by_guid.get(guid), f"guid:{guid}")
