-- The durable mail outbox (SPEC §7): a flow inserts its mail here in the
-- transaction of its effect, and the background sender claims due rows (in
-- an IMMEDIATE transaction, with a lease so that a row whose sender died is
-- claimed again), delivers them with backoff, and deletes them once sent.
-- Rows that exhausted their attempts stay, marked dead, for operators. No
-- secret is stored: verification and reset tokens are minted when the mail
-- is delivered, so the table never holds a usable link.

-- +goose Up
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    kind            VARCHAR(32) NOT NULL CHECK (kind IN ('verify_email', 'password_reset',
                        'register_notice', 'account_locked', 'password_changed', 'account_deleted')),
    -- The account the mail is about; NULL once that account is gone.
    user_id         TEXT REFERENCES users (id) ON DELETE SET NULL,
    recipient       VARCHAR(254) NOT NULL,
    -- Non-secret template data (for example when a lock ends).
    data            TEXT CHECK (json_valid(data) AND json_type(data) = 'object'),
    created_at      TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    next_attempt_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- A sender holds the row until then; past it, another may claim it.
    claimed_until   TIMESTAMP,
    last_error      VARCHAR(500),
    dead_at         TIMESTAMP
);
-- The sender's scan: due rows that are not dead, oldest first.
CREATE INDEX ix_mail_outbox_due ON mail_outbox (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX ix_mail_outbox_user_id ON mail_outbox (user_id);

-- +goose Down
DROP TABLE mail_outbox;
