-- users.failed_code_attempts: of the failures users.failed_login_attempts
-- counts, how many were wrong second-factor codes. Codes are given only
-- past the password (or in a signed-in session), so a lock that ends a
-- count with one is set by whoever holds the password, and lasts longer
-- each time (the lockout duration, doubled for each such lock in a week
-- under the same password, up to a day); an outsider's wrong passwords lock
-- for the fixed duration. It resets with the count, and when a right code
-- follows (the wrong ones were the owner's).

-- +goose Up
ALTER TABLE users ADD COLUMN failed_code_attempts integer NOT NULL DEFAULT 0
    CHECK (failed_code_attempts >= 0);

-- +goose Down
ALTER TABLE users DROP COLUMN failed_code_attempts;
