-- authd as an OpenID Connect provider (issue 10).
--
-- oauth_clients are the relying parties an operator registers: id is the
-- client_id (random, or chosen by the operator), type says whether the
-- client can keep a secret. secret_digest is HMAC-SHA-256 (hex) of the
-- secret under the refresh key with its own label: the secrets are 256-bit
-- random strings authd generates, so a fast keyed digest is as strong as a
-- slow hash, and a copy of the database alone cannot even test a guess.
-- NULL for public clients. Redirect URIs are matched exactly (JSON arrays
-- of strings).
--
-- oauth_consents remember, per user and client, the scopes the user granted
-- to a client that is not first-party, so the consent screen shows once.
--
-- oauth_auth_requests hold a validated authorization request while the
-- browser signs in and consents, so that any instance can finish it.
-- min_auth_time, when set, is the earliest sign-in that satisfies it
-- (prompt=login, max_age); force_consent is prompt=consent.
--
-- oauth_codes are authorization codes, stored as their SHA-256 digest,
-- single use and short-lived, bound to the client, redirect URI, PKCE
-- challenge and the browser session (session_id) that signed in.
-- issued_session_id is the session the first redemption started: a second
-- redemption revokes it, and with it every token issued from the code.
--
-- event_type grows by new labels, as SPEC §4 allows. SQLite cannot alter a
-- CHECK, so security_logs is rebuilt with the longer list (nothing refers to
-- it, so foreign keys need not be switched off); the down migration deletes
-- the rows of the new labels and rebuilds it with the old list.

-- +goose Up
CREATE TABLE security_logs_new (
    id                 TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    event_type         TEXT NOT NULL CHECK (event_type IN (
        'registration', 'email_verification_sent', 'email_verified',
        'login_success', 'login_failure', 'account_locked', 'account_unlocked',
        'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
        'session_revoked', 'password_reset_requested', 'password_reset_completed',
        'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
        'admin_action', 'mfa_enrolled', 'mfa_enabled', 'mfa_disabled',
        'mfa_challenge_issued', 'mfa_challenge_passed', 'mfa_challenge_failed',
        'recovery_code_used', 'recovery_codes_replaced', 'passkey_added', 'passkey_removed',
        'passkey_used', 'passkey_counter_regression', 'passkey_login_failed',
        'oidc_authorized', 'oidc_code_redeemed', 'oidc_code_reuse', 'oidc_consent_granted',
        'oidc_consent_revoked')),
    -- NULL when the user is unknown (a login for an unknown email) or gone.
    user_id            TEXT REFERENCES users (id) ON DELETE SET NULL,
    "timestamp"        TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ip_address         VARCHAR(45),
    user_agent         VARCHAR(512),
    result             TEXT NOT NULL CHECK (result IN ('success', 'failure')),
    failure_reason     VARCHAR(255),
    additional_context TEXT CHECK (json_valid(additional_context) AND json_type(additional_context) = 'object')
);
INSERT INTO security_logs_new SELECT id, event_type, user_id, "timestamp", ip_address, user_agent, result,
    failure_reason, additional_context FROM security_logs;
DROP TABLE security_logs;
ALTER TABLE security_logs_new RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");

CREATE TABLE oauth_clients (
    id                        VARCHAR(64) PRIMARY KEY NOT NULL,
    name                      VARCHAR(255) NOT NULL,
    type                      VARCHAR(16) NOT NULL CHECK (type IN ('public', 'confidential')),
    secret_digest             VARCHAR(128),
    redirect_uris             TEXT NOT NULL CHECK (json_valid(redirect_uris) AND json_type(redirect_uris) = 'array'),
    post_logout_redirect_uris TEXT NOT NULL CHECK (json_valid(post_logout_redirect_uris) AND json_type(post_logout_redirect_uris) = 'array'),
    first_party               BOOLEAN NOT NULL DEFAULT 0 CHECK (first_party IN (0, 1)),
    created_at                TIMESTAMP NOT NULL,
    updated_at                TIMESTAMP NOT NULL,
    CHECK ((type = 'public') = (secret_digest IS NULL))
);

CREATE TABLE oauth_consents (
    id         TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  VARCHAR(64) NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes     VARCHAR(255) NOT NULL,
    granted_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX ix_oauth_consents_user_id_client_id ON oauth_consents (user_id, client_id);
CREATE INDEX ix_oauth_consents_client_id ON oauth_consents (client_id);

CREATE TABLE oauth_auth_requests (
    id                    TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    client_id             VARCHAR(64) NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    redirect_uri          VARCHAR(2048) NOT NULL,
    scopes                VARCHAR(255) NOT NULL,
    state                 VARCHAR(1024),
    nonce                 VARCHAR(255),
    code_challenge        VARCHAR(128),
    code_challenge_method VARCHAR(8),
    min_auth_time         TIMESTAMP,
    force_consent         BOOLEAN NOT NULL DEFAULT 0 CHECK (force_consent IN (0, 1)),
    created_at            TIMESTAMP NOT NULL,
    expires_at            TIMESTAMP NOT NULL
);
CREATE INDEX ix_oauth_auth_requests_client_id ON oauth_auth_requests (client_id);
CREATE INDEX ix_oauth_auth_requests_expires_at ON oauth_auth_requests (expires_at);

CREATE TABLE oauth_codes (
    id                    TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    code_digest           VARCHAR(128) NOT NULL,
    client_id             VARCHAR(64) NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id               TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id            TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    redirect_uri          VARCHAR(2048) NOT NULL,
    code_challenge        VARCHAR(128),
    code_challenge_method VARCHAR(8),
    nonce                 VARCHAR(255),
    scopes                VARCHAR(255) NOT NULL,
    auth_time             TIMESTAMP NOT NULL,
    amr                   VARCHAR(64) NOT NULL,
    created_at            TIMESTAMP NOT NULL,
    expires_at            TIMESTAMP NOT NULL,
    used_at               TIMESTAMP,
    issued_session_id     TEXT REFERENCES sessions (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX ix_oauth_codes_code_digest ON oauth_codes (code_digest);
CREATE INDEX ix_oauth_codes_client_id ON oauth_codes (client_id);
CREATE INDEX ix_oauth_codes_user_id ON oauth_codes (user_id);
CREATE INDEX ix_oauth_codes_session_id ON oauth_codes (session_id);
CREATE INDEX ix_oauth_codes_issued_session_id ON oauth_codes (issued_session_id);
CREATE INDEX ix_oauth_codes_expires_at ON oauth_codes (expires_at);

-- sessions.client_id names the client whose authorization code started the
-- session (NULL: a JSON login or a browser sign-in), so that its refresh
-- tokens work only for that client and never at /v1/auth/refresh; no
-- foreign key: deleting a client revokes its sessions first, and the
-- revoked rows keep the label until retention takes them.
-- sessions.scopes are the scopes the client was granted (NULL for other
-- sessions): UserInfo shows the email only with the email scope.
-- sessions.browser_digest is the SHA-256 of the hosted pages' session
-- cookie (NULL: not a browser sign-in), so the cookie is a session like any
-- other: logout-all, password change, an administrator's revoke or lock end it.
ALTER TABLE sessions ADD COLUMN client_id VARCHAR(64);
ALTER TABLE sessions ADD COLUMN scopes VARCHAR(255);
ALTER TABLE sessions ADD COLUMN browser_digest VARCHAR(128);
CREATE INDEX ix_sessions_client_id ON sessions (client_id);
CREATE UNIQUE INDEX ix_sessions_browser_digest ON sessions (browser_digest);

-- +goose Down
DROP INDEX ix_sessions_browser_digest;
DROP INDEX ix_sessions_client_id;
ALTER TABLE sessions DROP COLUMN browser_digest;
ALTER TABLE sessions DROP COLUMN scopes;
ALTER TABLE sessions DROP COLUMN client_id;
DROP TABLE oauth_codes;
DROP TABLE oauth_auth_requests;
DROP TABLE oauth_consents;
DROP TABLE oauth_clients;
CREATE TABLE security_logs_old (
    id                 TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    event_type         TEXT NOT NULL CHECK (event_type IN (
        'registration', 'email_verification_sent', 'email_verified',
        'login_success', 'login_failure', 'account_locked', 'account_unlocked',
        'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
        'session_revoked', 'password_reset_requested', 'password_reset_completed',
        'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
        'admin_action', 'mfa_enrolled', 'mfa_enabled', 'mfa_disabled',
        'mfa_challenge_issued', 'mfa_challenge_passed', 'mfa_challenge_failed',
        'recovery_code_used', 'recovery_codes_replaced', 'passkey_added', 'passkey_removed',
        'passkey_used', 'passkey_counter_regression', 'passkey_login_failed')),
    -- NULL when the user is unknown (a login for an unknown email) or gone.
    user_id            TEXT REFERENCES users (id) ON DELETE SET NULL,
    "timestamp"        TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    ip_address         VARCHAR(45),
    user_agent         VARCHAR(512),
    result             TEXT NOT NULL CHECK (result IN ('success', 'failure')),
    failure_reason     VARCHAR(255),
    additional_context TEXT CHECK (json_valid(additional_context) AND json_type(additional_context) = 'object')
);
INSERT INTO security_logs_old SELECT id, event_type, user_id, "timestamp", ip_address, user_agent, result,
    failure_reason, additional_context FROM security_logs
    WHERE event_type NOT IN ('oidc_authorized', 'oidc_code_redeemed', 'oidc_code_reuse', 'oidc_consent_granted',
        'oidc_consent_revoked');
DROP TABLE security_logs;
ALTER TABLE security_logs_old RENAME TO security_logs;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
CREATE INDEX ix_security_logs_user_id ON security_logs (user_id);
CREATE INDEX ix_security_logs_timestamp ON security_logs ("timestamp");
