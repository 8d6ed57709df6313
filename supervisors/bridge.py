"""Awaiting an actor from trio without parking a thread per request.

The reply-to pattern (Akka's ``replyTo``) on public APIs only: the trio task
``tell``s an envelope whose reply callable hands the outcome back to the event
loop with ``TrioToken.run_sync_soon``; the task sleeps on a ``trio.Event``.
A deadline turns a missing answer into ``RequestTimeout``; a reply that comes
after the deadline (or after the loop ended) is dropped harmlessly.
"""

from __future__ import annotations

from typing import Any

import outcome
import trio

from trustchain.supervisors.errors import RequestTimeout
from trustchain.supervisors.messages import Message
from trustchain.supervisors.registry import Registry


async def ask(registry: Registry, name: str, message: Message, timeout: float = 10.0) -> Any:
    """Send ``message`` to actor ``name`` and await its reply (or its typed error)."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: list[outcome.Outcome] = []

    def deliver(result: outcome.Outcome) -> None:  # on the event loop
        box.append(result)
        done.set()

    def reply(result: outcome.Outcome) -> None:  # on any thread, exactly once
        try:
            token.run_sync_soon(deliver, result)
        except trio.RunFinishedError:
            pass

    registry.tell(name, message, reply)
    with trio.move_on_after(timeout):
        await done.wait()
    if not box:
        raise RequestTimeout(f"{name!r} did not answer {message.type!r} within {timeout:g} s")
    return box[0].unwrap()
