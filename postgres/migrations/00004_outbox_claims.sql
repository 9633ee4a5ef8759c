-- Each claim of an outbox mail gets its own id (SPEC §9). A sender claims
-- one mail right before sending it, and records the outcome (delivered,
-- retry, dead) only while its claim still holds the mail: a sender whose
-- lease ran out must not complete, release or kill a mail that another
-- sender has claimed since. The lease alone cannot say whose it is: two
-- senders may stamp the same claimed_until.

-- +goose Up
ALTER TABLE mail_outbox ADD COLUMN claim uuid;

-- +goose Down
ALTER TABLE mail_outbox DROP COLUMN claim;
