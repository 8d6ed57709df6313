"""IssuerActor: CSRs in, certificates out, keys only in the HSM.

One actor (one thread, one mailbox, the name ``issuer``) composed of parts, each a
mixin over ``IssuerBase`` (``base.py``: the configuration, the peers, the store and
hierarchy they share) holding one idea:

- ``pipeline.py``: issuance, a pipeline of steps that never waits, with signatures,
  log entries batched (``MAX_SIGN_BATCH``) and records (``MAX_RECORD_BATCH``);
- ``revocation.py``: revocation, and the certificate and CRL queries;
- ``hierarchy.py``: the CA hierarchy made or reloaded at start-up, rotation, status;
- ``crls.py``: publishing CRLs, which all of these ask for;
- ``faults.py``: a CA store that cannot be written, reported and probed until it works.

Each part's ``@handles`` methods are registered on ``IssuerActor`` (``IssuerBase``
joins the parts' handler tables).
"""

from __future__ import annotations

from trustchain.actors.issuer.hierarchy import HierarchyLifecycle
from trustchain.actors.issuer.pipeline import MAX_SIGN_BATCH, IssuancePipeline
from trustchain.actors.issuer.revocation import Revocation

# MAX_SIGN_BATCH is read from the pipeline's module: to change it (bench/issuance.py
# --sign-batch), set trustchain.actors.issuer.pipeline.MAX_SIGN_BATCH.
__all__ = ["MAX_SIGN_BATCH", "IssuerActor"]


class IssuerActor(IssuancePipeline, Revocation, HierarchyLifecycle):
    """``IssuerActor.start(context, config, hsm="hsm", ctlog="ctlog")``: ``config`` is
    the ``ca`` section; ``ctlog=None`` issues without a CT log."""
