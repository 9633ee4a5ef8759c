-- The seed's four tables (users, jwt_tokens, verification_tokens,
-- security_logs) with its column names, nullability, unique indexes, indexes
-- and foreign keys, plus what the flows need beyond the seed, each marked
-- "extra:" with its reason. SQLite has no enum or timestamp types: enums are
-- TEXT with CHECK constraints, booleans 0/1, UUIDs their 36-character text,
-- timestamps UTC text of fixed width (2006-01-02T15:04:05.000000Z) so that
-- they compare in time order, JSON text checked with json_valid.

-- +goose Up
CREATE TABLE users (
    id                     TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    -- Stored lower-cased, so the unique index makes addresses unique
    -- case-insensitively (extra: the CHECK keeps that true for every writer).
    email                  VARCHAR(254) NOT NULL CHECK (email = lower(email)),
    -- argon2id PHC string; '' once the account is erased.
    password_hash          VARCHAR(255) NOT NULL DEFAULT '',
    email_verified         BOOLEAN NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),
    account_status         TEXT NOT NULL DEFAULT 'inactive'
                           CHECK (account_status IN ('active', 'inactive', 'locked', 'deleted')),
    failed_login_attempts  INTEGER NOT NULL DEFAULT 0 CHECK (failed_login_attempts >= 0),
    account_locked_until   TIMESTAMP,
    registration_timestamp TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_login_timestamp   TIMESTAMP,
    last_password_change   TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    consent_timestamp      TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    consent_status         BOOLEAN NOT NULL DEFAULT 0 CHECK (consent_status IN (0, 1)),
    created_at             TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at             TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE INDEX ix_users_account_status ON users (account_status);

-- extra: one row per login. Every token pair rotated from a login belongs to
-- its session, so that reuse detection can revoke the whole family, users can
-- list and end their sessions, and the absolute session lifetime
-- (AUTHD_SESSION_MAX_AGE) holds however often the refresh token rotates.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_info  VARCHAR(255),
    created_at   TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_used_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at   TIMESTAMP NOT NULL,
    revoked_at   TIMESTAMP
);
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_expires_at ON sessions (expires_at);

CREATE TABLE jwt_tokens (
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
    parent_id   TEXT REFERENCES jwt_tokens (id) ON DELETE SET NULL,
    -- extra: when this refresh token was exchanged for a new pair; a repeat
    -- within AUTHD_REFRESH_REUSE_GRACE of it is a retry, later it is reuse.
    rotated_at  TIMESTAMP,
    CHECK ((token_type = 'refresh') = (token_value IS NOT NULL))
);
CREATE UNIQUE INDEX ix_jwt_tokens_jti ON jwt_tokens (jti);
CREATE INDEX ix_jwt_tokens_user_id ON jwt_tokens (user_id);
CREATE INDEX ix_jwt_tokens_expires_at ON jwt_tokens (expires_at);
CREATE INDEX ix_jwt_tokens_revoked ON jwt_tokens (revoked);
-- extra: a refresh is found by the digest of the presented token.
CREATE UNIQUE INDEX ix_jwt_tokens_token_value ON jwt_tokens (token_value);
-- extra: revoking a session touches all of its tokens.
CREATE INDEX ix_jwt_tokens_session_id ON jwt_tokens (session_id);
CREATE INDEX ix_jwt_tokens_parent_id ON jwt_tokens (parent_id);

CREATE TABLE verification_tokens (
    id         TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    -- SHA-256 digest of the token mailed to the user.
    token      VARCHAR(128) NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_type TEXT NOT NULL CHECK (token_type IN ('email_verification', 'password_reset')),
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at TIMESTAMP NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    used_at    TIMESTAMP
);
CREATE UNIQUE INDEX ix_verification_tokens_token ON verification_tokens (token);
CREATE INDEX ix_verification_tokens_user_id ON verification_tokens (user_id);
CREATE INDEX ix_verification_tokens_expires_at ON verification_tokens (expires_at);

CREATE TABLE security_logs (
    id                 TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    event_type         TEXT NOT NULL CHECK (event_type IN (
        'registration', 'email_verification_sent', 'email_verified',
        'login_success', 'login_failure', 'account_locked', 'account_unlocked',
        'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
        'session_revoked', 'password_reset_requested', 'password_reset_completed',
        'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
        'admin_action')),
    -- NULL when the user is unknown (a login for an unknown email) or gone.
    user_id            TEXT REFERENCES users (id) ON DELETE SET NULL,
    "timestamp"        TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ip_address         VARCHAR(45),
    user_agent         VARCHAR(512),
    result             TEXT NOT NULL CHECK (result IN ('success', 'failure')),
    failure_reason     VARCHAR(255),
    additional_context TEXT CHECK (json_valid(additional_context) AND json_type(additional_context) = 'object')
);
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");

-- +goose Down
DROP TABLE security_logs;
DROP TABLE verification_tokens;
DROP TABLE jwt_tokens;
DROP TABLE sessions;
DROP TABLE users;
