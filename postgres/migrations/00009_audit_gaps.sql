-- Two gaps in the security trail.
--
-- oidc_client_auth_failed: a token-endpoint request whose client could not
-- authenticate (an unknown client_id, a wrong or missing secret, a secret
-- from a public client). event_type grows by a label, as SPEC §4 allows.
--
-- mfa_reset: the notice mailed to a user whose second factors an
-- administrator removed (authd admin users reset-mfa, POST
-- /v1/admin/users/{id}/reset-mfa); what was removed is its (non-secret)
-- template data.

-- +goose Up
ALTER TYPE event_type ADD VALUE 'oidc_client_auth_failed';
ALTER TABLE mail_outbox DROP CONSTRAINT mail_outbox_kind_check;
ALTER TABLE mail_outbox ADD CONSTRAINT mail_outbox_kind_check CHECK (kind IN ('verify_email', 'password_reset',
    'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset'));

-- +goose Down
DELETE FROM mail_outbox WHERE kind = 'mfa_reset';
ALTER TABLE mail_outbox DROP CONSTRAINT mail_outbox_kind_check;
ALTER TABLE mail_outbox ADD CONSTRAINT mail_outbox_kind_check CHECK (kind IN ('verify_email', 'password_reset',
    'register_notice', 'account_locked', 'password_changed', 'account_deleted'));
-- PostgreSQL cannot drop an enum label: rebuild the type without it.
DELETE FROM security_logs WHERE event_type::text = 'oidc_client_auth_failed';
ALTER TYPE event_type RENAME TO event_type_audit;
CREATE TYPE event_type AS ENUM (
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
    'oidc_consent_revoked'
);
ALTER TABLE security_logs ALTER COLUMN event_type TYPE event_type USING event_type::text::event_type;
DROP TYPE event_type_audit;
