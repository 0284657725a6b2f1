"""Authentication and authorization (DESIGN.md §7, docs/security.md).

``keys``: API keys — their format, the keyed hash stored in place of the secret, and the
records every store keeps. ``users``: users and their argon2id password hashes;
``login``: the failed-login limits; ``tokens``: JWTs, bfx-issued and external. ``auth``:
the authenticators the HTTP middleware asks, in order, who a credential belongs to, and
the scope check. ``cli``: ``bfx keys`` and the security flags of ``bfx serve``;
``users_cli``: ``bfx users``.
"""
