-- bfx schema 2 (PostgreSQL): API keys (docs/security.md). Only a keyed hash of a key is
-- kept (digest: hex keyed BLAKE2b-256 under bfx_meta's key_secret); a revoked key keeps its
-- row (revoked_us) for audit. Each add or revocation is change-log op 5 with the key's
-- id, so every process updates its in-memory key map on the next request.
CREATE TABLE api_keys (
    id         BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    digest     TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    expires_us BIGINT,
    revoked_us BIGINT
);
