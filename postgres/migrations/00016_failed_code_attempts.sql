-- users.failed_code_attempts: of the failures users.failed_login_attempts
-- counts, how many were wrong second-factor codes. Codes are given only
-- past the password (or in a signed-in session), so a lock that ends a
-- count with one is set by whoever holds the password. It resets with the
-- count, and when a right code follows (the wrong ones were the owner's).
--
-- users.codes_locked_until: such a lock also refuses second-factor codes
-- until then, for longer each time (the lockout duration, doubled for each
-- such lock in a week under the same password, up to a day), while the
-- account's own lock, which anyone's login reads, keeps the fixed duration:
-- a longer one would tell an outsider that the address has an account, and
-- that someone passed its password. NULL: codes are not locked.

-- +goose Up
ALTER TABLE users ADD COLUMN failed_code_attempts integer NOT NULL DEFAULT 0
    CHECK (failed_code_attempts >= 0);
ALTER TABLE users ADD COLUMN codes_locked_until timestamptz;

-- +goose Down
ALTER TABLE users DROP COLUMN codes_locked_until;
ALTER TABLE users DROP COLUMN failed_code_attempts;
