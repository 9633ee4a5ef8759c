-- jwt_tokens.parent_id (an extra column: the refresh token a pair was
-- rotated from) stays as lineage for investigations and the GDPR export, but
-- loses its foreign key and the index that served only that key, as on
-- PostgreSQL (see its migration 10 for the measurement): nothing reads
-- tokens by parent, and every refresh paid a key check and index entries
-- for a SET NULL at purge time. A parent_id may now name a purged token.
--
-- SQLite cannot drop a column's foreign key, so the table is rebuilt (only
-- jwt_tokens itself refers to jwt_tokens). DROP TABLE's implicit delete
-- runs the old self-reference's SET NULL on rows that go anyway.
-- A parent_id that names no token is dropped on the way down.

-- +goose Up
CREATE TABLE jwt_tokens_new (
    id          TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    jti         VARCHAR(64) NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_type  TEXT NOT NULL CHECK (token_type IN ('access', 'refresh')),
    -- SHA-256 digest of a refresh token; NULL for access tokens.
    token_value VARCHAR(128),
    issued_at   TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at  TIMESTAMP NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    revoked_at  TIMESTAMP,
    device_info VARCHAR(255),
    created_at  TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- extra: the session (token family) the token belongs to.
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- extra: the refresh token this pair was rotated from (NULL for a login),
    -- so that the lineage of a session can be followed in an investigation;
    -- it may name a token the retention purge has removed (migration 10).
    parent_id   TEXT,
    -- extra: when this refresh token was exchanged for a new pair; a repeat
    -- within AUTHD_REFRESH_REUSE_GRACE of it is a retry, later it is reuse.
    rotated_at  TIMESTAMP,
    CHECK ((token_type = 'refresh') = (token_value IS NOT NULL))
);
INSERT INTO jwt_tokens_new SELECT id, jti, user_id, token_type, token_value, issued_at, expires_at, revoked,
    revoked_at, device_info, created_at, session_id, parent_id, rotated_at FROM jwt_tokens;
DROP TABLE jwt_tokens;
ALTER TABLE jwt_tokens_new RENAME TO jwt_tokens;
CREATE UNIQUE INDEX ix_jwt_tokens_jti ON jwt_tokens (jti);
CREATE INDEX ix_jwt_tokens_user_id ON jwt_tokens (user_id);
CREATE INDEX ix_jwt_tokens_expires_at ON jwt_tokens (expires_at);
CREATE INDEX ix_jwt_tokens_revoked ON jwt_tokens (revoked);
CREATE UNIQUE INDEX ix_jwt_tokens_token_value ON jwt_tokens (token_value);
CREATE INDEX ix_jwt_tokens_session_id ON jwt_tokens (session_id);

-- +goose Down
-- The restored key refers to the new table under its own name (the rename
-- carries it over), so that dropping the current table cannot set every
-- parent_id to NULL; rows go in in any order, so the check waits for COMMIT.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE jwt_tokens_old (
    id          TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    jti         VARCHAR(64) NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_type  TEXT NOT NULL CHECK (token_type IN ('access', 'refresh')),
    -- SHA-256 digest of a refresh token; NULL for access tokens.
    token_value VARCHAR(128),
    issued_at   TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at  TIMESTAMP NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    revoked_at  TIMESTAMP,
    device_info VARCHAR(255),
    created_at  TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- extra: the session (token family) the token belongs to.
    session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- extra: the refresh token this pair was rotated from (NULL for a login),
    -- so that the lineage of a session can be followed in an investigation.
    parent_id   TEXT REFERENCES jwt_tokens_old (id) ON DELETE SET NULL,
    -- extra: when this refresh token was exchanged for a new pair; a repeat
    -- within AUTHD_REFRESH_REUSE_GRACE of it is a retry, later it is reuse.
    rotated_at  TIMESTAMP,
    CHECK ((token_type = 'refresh') = (token_value IS NOT NULL))
);
INSERT INTO jwt_tokens_old SELECT id, jti, user_id, token_type, token_value, issued_at, expires_at, revoked,
    revoked_at, device_info, created_at, session_id,
    CASE WHEN parent_id IN (SELECT id FROM jwt_tokens) THEN parent_id END, rotated_at FROM jwt_tokens;
DROP TABLE jwt_tokens;
ALTER TABLE jwt_tokens_old RENAME TO jwt_tokens;
CREATE UNIQUE INDEX ix_jwt_tokens_jti ON jwt_tokens (jti);
CREATE INDEX ix_jwt_tokens_user_id ON jwt_tokens (user_id);
CREATE INDEX ix_jwt_tokens_expires_at ON jwt_tokens (expires_at);
CREATE INDEX ix_jwt_tokens_revoked ON jwt_tokens (revoked);
CREATE UNIQUE INDEX ix_jwt_tokens_token_value ON jwt_tokens (token_value);
CREATE INDEX ix_jwt_tokens_session_id ON jwt_tokens (session_id);
CREATE INDEX ix_jwt_tokens_parent_id ON jwt_tokens (parent_id);
