-- The secrets of the keys directory (refresh-token.key, mfa.key) must be
-- the same on every instance and across restarts: rotated refresh tokens
-- are derived under one, confidential clients' secrets digested under it,
-- TOTP secrets sealed and recovery codes digested under the other. A
-- mistyped, unmounted or foreign AUTHD_KEYS_DIR would otherwise have an
-- instance make or read another key and go on without a word.
--
-- key_checks: one row per secret, its check value (HMAC-SHA-256 of a fixed
-- label under the secret, which tells nothing of it), recorded by the first
-- start that held the secret; every start compares its own, and refuses a
-- key whose check differs. `authd keys secrets` replaces the row of a
-- secret it makes in place of a lost one.

-- +goose Up
CREATE TABLE key_checks (
    name        varchar(64) PRIMARY KEY,
    check_value varchar(64) NOT NULL,
    recorded_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE key_checks;
