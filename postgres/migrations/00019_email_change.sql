-- An account's address can change (POST /v1/users/me/email): a link mailed
-- to the new address moves the account there when followed.
--
-- verification_tokens.new_email: the link is an email_verification token
-- (SPEC §4 keeps that enum's two labels) naming the address it moves the
-- account to; NULL on a token that verifies the account's own address.
-- Like the other tokens it lives until retention purges it.
--
-- event_type grows by two labels, as SPEC §4 allows: email_change_requested
-- (a link mailed, or refused) and email_changed (the link followed).
--
-- mail_outbox.kind grows by three: email_change (the link, to the new
-- address), email_change_taken (to a new address that has an account: no
-- link, a notice) and email_change_notice (to the old address, when the
-- change is asked for and when it is made; its data names the new one).

-- +goose Up
ALTER TABLE verification_tokens ADD COLUMN new_email varchar(254)
    CHECK (new_email IS NULL OR token_type = 'email_verification');
ALTER TYPE event_type ADD VALUE 'email_change_requested';
ALTER TYPE event_type ADD VALUE 'email_changed';
ALTER TABLE mail_outbox DROP CONSTRAINT mail_outbox_kind_check;
ALTER TABLE mail_outbox ADD CONSTRAINT mail_outbox_kind_check CHECK (kind IN ('verify_email', 'password_reset',
    'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset', 'factor_changed',
    'email_change', 'email_change_taken', 'email_change_notice'));

-- +goose Down
-- A change link left without its column would verify the old address.
DELETE FROM verification_tokens WHERE new_email IS NOT NULL;
ALTER TABLE verification_tokens DROP COLUMN new_email;
DELETE FROM mail_outbox WHERE kind IN ('email_change', 'email_change_taken', 'email_change_notice');
ALTER TABLE mail_outbox DROP CONSTRAINT mail_outbox_kind_check;
ALTER TABLE mail_outbox ADD CONSTRAINT mail_outbox_kind_check CHECK (kind IN ('verify_email', 'password_reset',
    'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset', 'factor_changed'));
-- PostgreSQL cannot drop an enum label: rebuild the type without them.
DELETE FROM security_logs WHERE event_type::text IN ('email_change_requested', 'email_changed');
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
    'oidc_consent_revoked', 'oidc_client_auth_failed', 'passkey_renamed'
);
ALTER TABLE security_logs ALTER COLUMN event_type TYPE event_type USING event_type::text::event_type;
DROP TYPE event_type_audit;
