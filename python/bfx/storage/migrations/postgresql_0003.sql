-- bfx schema 3 (PostgreSQL): users (docs/security.md). Only an argon2id hash of a password
-- is kept. Each add or removal is change-log op 7 with the user's id, so every process
-- updates its in-memory user map on the next request. A removed user's row is deleted.
CREATE TABLE users (
    id            BIGINT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    scopes        TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_us    BIGINT NOT NULL
);
