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
-- event_type grows by adding labels, as SPEC §4 allows (never removing them
-- while rows use them: the down migration deletes those rows first).

-- +goose Up
ALTER TYPE event_type ADD VALUE 'oidc_authorized';
ALTER TYPE event_type ADD VALUE 'oidc_code_redeemed';
ALTER TYPE event_type ADD VALUE 'oidc_code_reuse';
ALTER TYPE event_type ADD VALUE 'oidc_consent_granted';
ALTER TYPE event_type ADD VALUE 'oidc_consent_revoked';

CREATE TABLE oauth_clients (
    id                        varchar(64) PRIMARY KEY,
    name                      varchar(255) NOT NULL,
    type                      varchar(16) NOT NULL CHECK (type IN ('public', 'confidential')),
    secret_digest             varchar(128),
    redirect_uris             jsonb NOT NULL CHECK (jsonb_typeof(redirect_uris) = 'array'),
    post_logout_redirect_uris jsonb NOT NULL CHECK (jsonb_typeof(post_logout_redirect_uris) = 'array'),
    first_party               boolean NOT NULL DEFAULT false,
    created_at                timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL,
    CHECK ((type = 'public') = (secret_digest IS NULL))
);

CREATE TABLE oauth_consents (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  varchar(64) NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    scopes     varchar(255) NOT NULL,
    granted_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX ix_oauth_consents_user_id_client_id ON oauth_consents (user_id, client_id);
CREATE INDEX ix_oauth_consents_client_id ON oauth_consents (client_id);

CREATE TABLE oauth_auth_requests (
    id                    uuid PRIMARY KEY,
    client_id             varchar(64) NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    redirect_uri          varchar(2048) NOT NULL,
    scopes                varchar(255) NOT NULL,
    state                 varchar(1024),
    nonce                 varchar(255),
    code_challenge        varchar(128),
    code_challenge_method varchar(8),
    min_auth_time         timestamptz,
    force_consent         boolean NOT NULL DEFAULT false,
    created_at            timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL
);
CREATE INDEX ix_oauth_auth_requests_client_id ON oauth_auth_requests (client_id);
CREATE INDEX ix_oauth_auth_requests_expires_at ON oauth_auth_requests (expires_at);

CREATE TABLE oauth_codes (
    id                    uuid PRIMARY KEY,
    code_digest           varchar(128) NOT NULL,
    client_id             varchar(64) NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
    user_id               uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id            uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    redirect_uri          varchar(2048) NOT NULL,
    code_challenge        varchar(128),
    code_challenge_method varchar(8),
    nonce                 varchar(255),
    scopes                varchar(255) NOT NULL,
    auth_time             timestamptz NOT NULL,
    amr                   varchar(64) NOT NULL,
    created_at            timestamptz NOT NULL,
    expires_at            timestamptz NOT NULL,
    used_at               timestamptz,
    issued_session_id     uuid REFERENCES sessions (id) ON DELETE SET NULL
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
ALTER TABLE sessions ADD COLUMN client_id varchar(64);
ALTER TABLE sessions ADD COLUMN scopes varchar(255);
ALTER TABLE sessions ADD COLUMN browser_digest varchar(128);
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
-- PostgreSQL cannot drop an enum label: rebuild the type without them.
DELETE FROM security_logs WHERE event_type::text IN ('oidc_authorized', 'oidc_code_redeemed', 'oidc_code_reuse',
    'oidc_consent_granted', 'oidc_consent_revoked');
ALTER TYPE event_type RENAME TO event_type_oidc;
CREATE TYPE event_type AS ENUM (
    'registration', 'email_verification_sent', 'email_verified',
    'login_success', 'login_failure', 'account_locked', 'account_unlocked',
    'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
    'session_revoked', 'password_reset_requested', 'password_reset_completed',
    'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
    'admin_action', 'mfa_enrolled', 'mfa_enabled', 'mfa_disabled',
    'mfa_challenge_issued', 'mfa_challenge_passed', 'mfa_challenge_failed',
    'recovery_code_used', 'recovery_codes_replaced', 'passkey_added', 'passkey_removed',
    'passkey_used', 'passkey_counter_regression', 'passkey_login_failed'
);
ALTER TABLE security_logs ALTER COLUMN event_type TYPE event_type USING event_type::text::event_type;
DROP TYPE event_type_oidc;
