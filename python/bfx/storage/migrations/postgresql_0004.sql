-- bfx schema 4 (PostgreSQL): version chains, aliases and lenses (docs/domain.md,
-- docs/storage.md). Every process keeps all three in memory (Store.catalog) and follows
-- the change log: op 8 with a chain id re-reads that chain (members, head, history),
-- op 9 with an alias id re-reads that alias, op 10 with a lens id that lens (a row gone
-- means removed). Alias and lens ids are a 64-bit hash of the name (bfx.storage.catalog).
CREATE TABLE version_members (
    substrate_id       BIGINT PRIMARY KEY,
    chain_id           BIGINT NOT NULL,
    version            INTEGER NOT NULL,
    change_description TEXT,
    created_us         BIGINT NOT NULL,
    UNIQUE (chain_id, version)
);
CREATE TABLE version_heads (
    chain_id BIGINT PRIMARY KEY,
    head_id  BIGINT NOT NULL
);
-- Every head move, rollbacks included, in order (entry 1, 2, ... per chain).
CREATE TABLE version_history (
    chain_id   BIGINT NOT NULL,
    entry      INTEGER NOT NULL,
    head_id    BIGINT NOT NULL,
    action     TEXT NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (chain_id, entry)
);
CREATE TABLE aliases (
    id           BIGINT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    substrate_id BIGINT NOT NULL,
    created_us   BIGINT NOT NULL
);
CREATE TABLE lenses (
    id              BIGINT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    expression_code TEXT NOT NULL,
    parameters      TEXT NOT NULL,
    description     TEXT,
    created_us      BIGINT NOT NULL
);
