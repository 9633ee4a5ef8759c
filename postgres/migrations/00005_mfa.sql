-- A second factor: TOTP and recovery codes (issue 9).
--
-- mfa_factors holds each user's enrolled factors, one per kind. The TOTP
-- secret is stored only encrypted (AES-256-GCM under mfa.key in
-- AUTHD_KEYS_DIR, base64), so a copy of the database alone yields no codes.
-- A factor counts once confirmed with a first code; an unconfirmed one is an
-- enrolment in progress. last_step is the last accepted TOTP time step: a
-- code of that step or an earlier one is refused, so that a code seen over a
-- shoulder or in a log cannot be replayed within its window.
--
-- mfa_recovery_codes keeps only a keyed digest of each code; used_at marks a
-- code spent (each works once).
--
-- mfa_challenges are the second step of a login: a correct password for an
-- account with a factor gets an opaque mfa_token (stored as its digest, bound
-- to the user, five minutes) instead of a session; failures counts wrong codes
-- (the token dies at five), used_at marks it redeemed.
--
-- sessions.amr (RFC 8176, space-separated) says how the session's login was
-- authenticated, so that every access token rotated from it carries the same
-- amr; sessions from before this migration were password logins.
--
-- event_type grows by adding labels, as SPEC §4 allows (never removing them
-- while rows use them: the down migration deletes those rows first).

-- +goose Up
ALTER TYPE event_type ADD VALUE 'mfa_enrolled';
ALTER TYPE event_type ADD VALUE 'mfa_enabled';
ALTER TYPE event_type ADD VALUE 'mfa_disabled';
ALTER TYPE event_type ADD VALUE 'mfa_challenge_issued';
ALTER TYPE event_type ADD VALUE 'mfa_challenge_passed';
ALTER TYPE event_type ADD VALUE 'mfa_challenge_failed';
ALTER TYPE event_type ADD VALUE 'recovery_code_used';
ALTER TYPE event_type ADD VALUE 'recovery_codes_replaced';

CREATE TABLE mfa_factors (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         varchar(16) NOT NULL CHECK (kind IN ('totp')),
    secret       varchar(255) NOT NULL,
    confirmed    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    confirmed_at timestamptz,
    last_used_at timestamptz,
    last_step    integer NOT NULL DEFAULT 0 CHECK (last_step >= 0)
);
CREATE UNIQUE INDEX ix_mfa_factors_user_id_kind ON mfa_factors (user_id, kind);

CREATE TABLE mfa_recovery_codes (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_digest varchar(128) NOT NULL,
    created_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE UNIQUE INDEX ix_mfa_recovery_codes_user_id_code_digest ON mfa_recovery_codes (user_id, code_digest);

CREATE TABLE mfa_challenges (
    id          uuid PRIMARY KEY,
    token       varchar(128) NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_info varchar(255),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    failures    integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    used_at     timestamptz
);
CREATE UNIQUE INDEX ix_mfa_challenges_token ON mfa_challenges (token);
CREATE INDEX ix_mfa_challenges_user_id ON mfa_challenges (user_id);
CREATE INDEX ix_mfa_challenges_expires_at ON mfa_challenges (expires_at);

ALTER TABLE sessions ADD COLUMN amr varchar(64) NOT NULL DEFAULT 'pwd';

-- +goose Down
ALTER TABLE sessions DROP COLUMN amr;
DROP TABLE mfa_challenges;
DROP TABLE mfa_recovery_codes;
DROP TABLE mfa_factors;
-- PostgreSQL cannot drop an enum label: rebuild the type without them.
DELETE FROM security_logs WHERE event_type::text IN ('mfa_enrolled', 'mfa_enabled', 'mfa_disabled',
    'mfa_challenge_issued', 'mfa_challenge_passed', 'mfa_challenge_failed', 'recovery_code_used',
    'recovery_codes_replaced');
ALTER TYPE event_type RENAME TO event_type_mfa;
CREATE TYPE event_type AS ENUM (
    'registration', 'email_verification_sent', 'email_verified',
    'login_success', 'login_failure', 'account_locked', 'account_unlocked',
    'token_refreshed', 'refresh_token_reuse', 'logout', 'logout_all',
    'session_revoked', 'password_reset_requested', 'password_reset_completed',
    'password_changed', 'consent_updated', 'data_exported', 'account_deleted',
    'admin_action'
);
ALTER TABLE security_logs ALTER COLUMN event_type TYPE event_type USING event_type::text::event_type;
DROP TYPE event_type_mfa;
