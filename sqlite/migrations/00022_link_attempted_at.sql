-- A link that moves an account counts its password checks
-- (verification_tokens.attempts, migration 20), each reserved before its
-- hash. A check past the last waits while the others are being checked,
-- since one of them may yet follow the link. So that a link whose last
-- check never ended (the process died, the database went away) does not
-- wait for ever, the time of the last reservation is kept: one older than
-- any check can take ends the link.
--
-- verification_tokens.attempted_at: when the last password check was
-- reserved; NULL on a token never checked.

-- +goose Up
ALTER TABLE verification_tokens ADD COLUMN attempted_at TIMESTAMP;

-- +goose Down
ALTER TABLE verification_tokens DROP COLUMN attempted_at;
