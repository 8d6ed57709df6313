"""The CT routes of the HTTP edge, over one CTLogActor.

RFC 6962 §4 under ``/ct/v1/`` (add-chain, add-pre-chain, get-sth,
get-sth-consistency, get-proof-by-hash, get-entries, get-roots,
get-entry-and-proof) and the C2SP static-ct-api read path at the top level
(``/checkpoint``, ``/tile/<L>/<N>[.p/<W>]``, ``/tile/data/<N>[.p/<W>]``,
``/issuer/<hex SHA-256>``). Each route turns a request into one CTLogActor
message; the actor checks chains, ranges and sizes, this module checks only
the shape of what arrives: JSON bodies, base64, and query parameters, which
are decimal integers in 0..2^63-1 (a larger number is refused, not clamped).
A ``+`` in a base64 query value that a client forgot to escape arrives as a
space and is read back as ``+``. Nothing here appends on an error: a
submission reaches the actor only once all of it has parsed.

Full tiles and issuer certificates never change, so they are served
``immutable``; partial tiles (replaced by wider ones, then deleted) and the
checkpoint are ``no-store``.
"""

from __future__ import annotations

from typing import Any

from trustchain.actors.ct import LogCorrupted
from trustchain.actors.ctlog.messages import (
    AddChain,
    AddPreChain,
    GetCheckpoint,
    GetEntries,
    GetEntryAndProof,
    GetIssuerCertificate,
    GetProofByHash,
    GetRoots,
    GetSTH,
    GetSTHConsistency,
    GetTile,
)
from trustchain.protocols.http_plumbing import (
    IMMUTABLE,
    NO_STORE,
    Ask,
    NotFound,
    Request,
    Response,
    Route,
    decode_base64,
    json_response,
    route,
)
from trustchain.supervisors import InvalidRequest, Message

SCT_FIELDS = ("sct_version", "id", "timestamp", "extensions", "signature")  # RFC 6962 §4.1


class CtRoutes:
    """RFC 6962 §4 and the static-ct-api read path over one CTLogActor."""

    def __init__(self, ask: Ask, actor: str = "ctlog") -> None:
        self._ask = ask
        self.actor = actor

    def routes(self) -> list[Route]:
        v1 = "/ct/v1/"
        return [
            route(v1 + "add-chain", "POST", self.add_chain),
            route(v1 + "add-pre-chain", "POST", self.add_pre_chain),
            route(v1 + "get-sth", "GET", self.get_sth),
            route(v1 + "get-sth-consistency", "GET", self.get_sth_consistency),
            route(v1 + "get-proof-by-hash", "GET", self.get_proof_by_hash),
            route(v1 + "get-entries", "GET", self.get_entries),
            route(v1 + "get-roots", "GET", self.get_roots),
            route(v1 + "get-entry-and-proof", "GET", self.get_entry_and_proof),
            route("/checkpoint", "GET", self.checkpoint),
            route("/tile/{path}", "GET", self.tile, r"/tile/(.+)"),
            route("/issuer/{fingerprint}", "GET", self.issuer, r"/issuer/([0-9a-fA-F]{64})"),
        ]

    async def ask(self, message: Message) -> Any:
        return await self._ask(self.actor, message)

    # RFC 6962 §4 ----------------------------------------------------------------------

    async def add_chain(self, request: Request) -> Response:
        return await self._submit(request, AddChain)

    async def add_pre_chain(self, request: Request) -> Response:
        return await self._submit(request, AddPreChain)

    async def _submit(self, request: Request, kind: type[AddChain] | type[AddPreChain]) -> Response:
        body = await request.json()
        chain = body.get("chain") if isinstance(body, dict) else None
        if not isinstance(chain, list):
            raise InvalidRequest('the body must be {"chain": [base64 DER certificate, ...]}')
        ders = [decode_base64(c, f"chain[{i}]") for i, c in enumerate(chain)]
        reply = await self.ask(kind(ders))
        return json_response({k: reply[k] for k in SCT_FIELDS})

    async def get_sth(self, request: Request) -> Response:
        return json_response(await self.ask(GetSTH()))

    async def get_sth_consistency(self, request: Request) -> Response:
        first, second = request.int_param("first"), request.int_param("second")
        return json_response(await self.ask(GetSTHConsistency(first, second)))

    async def get_proof_by_hash(self, request: Request) -> Response:
        leaf_hash = request.base64_param("hash")
        if len(leaf_hash) != 32:
            raise InvalidRequest(f"'hash' is a SHA-256 leaf hash (32 bytes), not {len(leaf_hash)}")
        message = GetProofByHash(leaf_hash, request.int_param("tree_size"))
        return json_response(await self.ask(message))

    async def get_entries(self, request: Request) -> Response:
        start, end = request.int_param("start"), request.int_param("end")
        if end < start:
            raise InvalidRequest(f"'end' ({end}) is before 'start' ({start})")
        return json_response(await self.ask(GetEntries(start, end)))

    async def get_roots(self, request: Request) -> Response:
        return json_response(await self.ask(GetRoots()))

    async def get_entry_and_proof(self, request: Request) -> Response:
        message = GetEntryAndProof(request.int_param("leaf_index"), request.int_param("tree_size"))
        return json_response(await self.ask(message))

    # static-ct-api ---------------------------------------------------------------------

    async def checkpoint(self, request: Request) -> Response:
        note = await self.ask(GetCheckpoint())
        return Response(200, note, "text/plain; charset=utf-8", [("cache-control", NO_STORE)])

    async def tile(self, request: Request) -> Response:
        path = request.path.removeprefix("/")
        data = await self.ask(GetTile(path))
        cache = NO_STORE if ".p/" in path else IMMUTABLE
        return Response(200, data, "application/octet-stream", [("cache-control", cache)])

    async def issuer(self, request: Request) -> Response:
        assert request.match is not None
        fingerprint = request.match[1].lower()
        try:
            der = await self.ask(GetIssuerCertificate(fingerprint))
        except LogCorrupted:  # the log says "missing or damaged"; to a client, it is not here
            raise NotFound(f"no issuer certificate with fingerprint {fingerprint}") from None
        return Response(200, der, "application/pkix-cert", [("cache-control", IMMUTABLE)])
