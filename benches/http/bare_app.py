"""The yardstick: a bare ASGI app under Granian that returns one fixed JSON document
(``app``; ``rsgi_app`` is the same over Granian's RSGI interface).

Encoded with msgspec on every request, like the real app, and about the size of a
substrate record, so the ratio measures what bfx adds: routing, validation, the
registry call, the record conversion and the metrics. A POST's body is read (and
dropped) first, as any server must: under Granian's ASGI interface that read costs about
as much as the rest of the request, so POST routes are compared with a bare POST.
"""

import msgspec

_encode = msgspec.json.Encoder().encode
_DOC = {
    "substrate_id": "0x0D20BC49950301AD",
    "identity": 945962945966440877,
    "created_at": "2026-11-22T10:33:18.167259Z",
    "expression_type": "lambda",
    "expression_code": "lambda x, y=2: x * y",
    "canonical_code": "lambda x, y=2: x * y",
    "metadata": {"name": "multiply"},
    "invocations": 0,
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] == "POST":
        # Read the body as bfx does: stop once Content-Length bytes are in, rather than
        # waiting for Granian's empty closing message.
        length = next((int(v) for k, v in scope["headers"] if k == b"content-length"), None)
        got = 0
        more = True
        while more and got != length:
            msg = await receive()
            got += len(msg.get("body", b""))
            more = msg.get("more_body", False)
    body = _encode(_DOC)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _Rsgi:
    """The same yardstick over Granian's RSGI interface (``bare_app:rsgi_app``): the body
    read in one call, the answer sent in one."""

    async def __rsgi__(self, scope, proto):
        if scope.method == "POST":
            await proto()
        proto.response_bytes(200, [("content-type", "application/json")], _encode(_DOC))


rsgi_app = _Rsgi()
