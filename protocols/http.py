"""The HTTPS edge: a plain ASGI 3 app served by hypercorn on trio, IPv6 only.

The face of the edge's modules, each with one idea:

- ``http_app``: ``HttpApp``, the routes (CT log, CRLs and CA certificates,
  ``/health``, ``/ready``, ``/metrics``), each one ``ask`` to an actor;
- ``http_ct``: the CT routes (RFC 6962 §4 and static-ct-api);
- ``http_plumbing``: requests, responses, the router, errors and their statuses;
- ``http_metrics``: the Prometheus collector read afresh per scrape;
- ``http_server``: the IPv6-only socket, TLS from TrustChain's own renewed
  certificate, hypercorn, the plain-http face (``PublicOnly``) and
  ``serve_http``, whose cancellation is the graceful stop.

Not done here: HTTP/3; issuance and revocation (the control socket has them).
"""

from trustchain.protocols.http_app import HttpApp
from trustchain.protocols.http_server import (
    ALPN,
    FIRST_CERTIFICATE_TIMEOUT_S,
    EdgeTLS,
    HttpStartFailed,
    HypercornConfig,
    PublicOnly,
    bind_ipv6,
    check_names,
    serve_http,
)

__all__ = [
    "ALPN",
    "FIRST_CERTIFICATE_TIMEOUT_S",
    "EdgeTLS",
    "HttpApp",
    "HttpStartFailed",
    "HypercornConfig",
    "PublicOnly",
    "bind_ipv6",
    "check_names",
    "serve_http",
]
