-- bfx schema 1 (PostgreSQL). Ids are the u64 identities stored as signed 64-bit
-- integers (two's complement); times are microseconds since the Unix epoch (UTC).
CREATE TABLE bfx_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One row: the sequence number of the last change. Writers lock it first, so
-- changes commit in sequence order and readers can follow the log.
CREATE TABLE bfx_head (
    singleton SMALLINT PRIMARY KEY CHECK (singleton = 1),
    seq  BIGINT NOT NULL
);
INSERT INTO bfx_head (singleton, seq) VALUES (1, 0);
CREATE TABLE substrates (
    id              BIGINT PRIMARY KEY,
    expression_type TEXT NOT NULL,
    expression_code TEXT NOT NULL,
    canonical_code  TEXT NOT NULL,
    metadata        BYTEA,
    created_us      BIGINT NOT NULL
);
CREATE TABLE relationships (
    id            BIGINT PRIMARY KEY,
    rel_type      TEXT NOT NULL,
    source_id     BIGINT NOT NULL REFERENCES substrates (id) ON DELETE CASCADE,
    target_id     BIGINT NOT NULL REFERENCES substrates (id) ON DELETE CASCADE,
    bidirectional BOOLEAN NOT NULL,
    constraints   BYTEA,
    created_us    BIGINT NOT NULL
);
-- For the cascade when a substrate is deleted.
CREATE INDEX relationships_source ON relationships (source_id);
CREATE INDEX relationships_target ON relationships (target_id);
-- The change log every process follows: op 1 substrate added, 2 substrate
-- deleted, 3 relationship added, 4 relationship deleted.
CREATE TABLE changes (
    seq BIGINT PRIMARY KEY,
    op  SMALLINT NOT NULL,
    id  BIGINT NOT NULL
);
