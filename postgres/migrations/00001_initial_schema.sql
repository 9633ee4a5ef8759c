-- The seed's four tables (users, jwt_tokens, verification_tokens,
-- security_logs) with its column names, nullability, unique indexes, indexes
-- and foreign keys, plus what the flows need beyond the seed, each marked
-- "extra:" with its reason. Enumerations are native enum types; every
-- timestamp is timestamptz and written in UTC.

-- +goose Up
CREATE TYPE account_status AS ENUM ('active', 'inactive', 'locked', 'deleted');
CREATE TYPE token_type AS ENUM ('access', 'refresh');
CREATE TYPE verification_token_type AS ENUM ('email_verification', 'password_reset');
CREATE TYPE event_result AS ENUM ('success', 'failure');
CREATE TYPE event_type AS ENUM (
    'registration', 'email_verification_sent', 'email_verified',
    'login_success', 'login_failure', 'account_locked', 'account_unlocked',
    'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
    'session_revoked', 'password_reset_requested', 'password_reset_completed',
    'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
    'admin_action'
);

CREATE TABLE users (
    id                     uuid PRIMARY KEY,
    -- Stored lower-cased, so the unique index makes addresses unique
    -- case-insensitively (extra: the CHECK keeps that true for every writer).
    email                  varchar(254) NOT NULL CHECK (email = lower(email)),
    -- argon2id PHC string; '' once the account is erased.
    password_hash          varchar(255) NOT NULL DEFAULT '',
    email_verified         boolean NOT NULL DEFAULT false,
    account_status         account_status NOT NULL DEFAULT 'inactive',
    failed_login_attempts  integer NOT NULL DEFAULT 0 CHECK (failed_login_attempts >= 0),
    account_locked_until   timestamptz,
    registration_timestamp timestamptz NOT NULL DEFAULT now(),
    last_login_timestamp   timestamptz,
    last_password_change   timestamptz NOT NULL DEFAULT now(),
    consent_timestamp      timestamptz NOT NULL DEFAULT now(),
    consent_status         boolean NOT NULL DEFAULT false,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ix_users_email ON users (email);
CREATE INDEX ix_users_account_status ON users (account_status);

-- extra: one row per login. Every token pair rotated from a login belongs to
-- its session, so that reuse detection can revoke the whole family, users can
-- list and end their sessions, and the absolute session lifetime
-- (AUTHD_SESSION_MAX_AGE) holds however often the refresh token rotates.
CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_info  varchar(255),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX ix_sessions_user_id ON sessions (user_id);
CREATE INDEX ix_sessions_expires_at ON sessions (expires_at);

CREATE TABLE jwt_tokens (
    id          uuid PRIMARY KEY,
    jti         varchar(64) NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_type  token_type NOT NULL,
    -- SHA-256 digest of a refresh token; NULL for access tokens.
    token_value varchar(128),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked     boolean NOT NULL DEFAULT false,
    revoked_at  timestamptz,
    device_info varchar(255),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- extra: the session (token family) the token belongs to.
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    -- extra: the refresh token this pair was rotated from (NULL for a login),
    -- so that the lineage of a session can be followed in an investigation.
    parent_id   uuid REFERENCES jwt_tokens (id) ON DELETE SET NULL,
    -- extra: when this refresh token was exchanged for a new pair; a repeat
    -- within AUTHD_REFRESH_REUSE_GRACE of it is a retry, later it is reuse.
    rotated_at  timestamptz,
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
    id         uuid PRIMARY KEY,
    -- SHA-256 digest of the token mailed to the user.
    token      varchar(128) NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_type verification_token_type NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used       boolean NOT NULL DEFAULT false,
    used_at    timestamptz
);
CREATE UNIQUE INDEX ix_verification_tokens_token ON verification_tokens (token);
CREATE INDEX ix_verification_tokens_user_id ON verification_tokens (user_id);
CREATE INDEX ix_verification_tokens_expires_at ON verification_tokens (expires_at);

CREATE TABLE security_logs (
    id                 uuid PRIMARY KEY,
    event_type         event_type NOT NULL,
    -- NULL when the user is unknown (a login for an unknown email) or gone.
    user_id            uuid REFERENCES users (id) ON DELETE SET NULL,
    "timestamp"        timestamptz NOT NULL DEFAULT now(),
    ip_address         varchar(45),
    user_agent         varchar(512),
    result             event_result NOT NULL,
    failure_reason     varchar(255),
    additional_context jsonb CHECK (jsonb_typeof(additional_context) = 'object')
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
DROP TYPE event_type;
DROP TYPE event_result;
DROP TYPE verification_token_type;
DROP TYPE token_type;
DROP TYPE account_status;
