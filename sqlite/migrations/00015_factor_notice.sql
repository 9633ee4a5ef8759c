-- factor_changed: the notice mailed to a user whose second factors changed
-- from a signed-in session (an authenticator app turned on or off, a
-- passkey added or removed, recovery codes replaced), so that a factor an
-- intruder adds, which a password reset does not remove, does not go
-- unseen. What changed is its (non-secret) template data.
--
-- SQLite cannot alter a CHECK, so mail_outbox is rebuilt with the longer
-- list (nothing refers to it, so foreign keys need not be switched off);
-- the down migration deletes the new kind's rows and rebuilds it with the
-- old list.

-- +goose Up
CREATE TABLE mail_outbox_new (
    id              TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    kind            VARCHAR(32) NOT NULL CHECK (kind IN ('verify_email', 'password_reset',
                        'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset', 'factor_changed')),
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
    dead_at         TIMESTAMP,
    claim           TEXT CHECK (length(claim) = 36)
);
INSERT INTO mail_outbox_new SELECT id, kind, user_id, recipient, data, created_at, next_attempt_at, attempts,
    claimed_until, last_error, dead_at, claim FROM mail_outbox;
DROP TABLE mail_outbox;
ALTER TABLE mail_outbox_new RENAME TO mail_outbox;
CREATE INDEX ix_mail_outbox_due ON mail_outbox (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX ix_mail_outbox_user_id ON mail_outbox (user_id);

-- +goose Down
CREATE TABLE mail_outbox_old (
    id              TEXT PRIMARY KEY NOT NULL CHECK (length(id) = 36),
    kind            VARCHAR(32) NOT NULL CHECK (kind IN ('verify_email', 'password_reset',
                        'register_notice', 'account_locked', 'password_changed', 'account_deleted', 'mfa_reset')),
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
    dead_at         TIMESTAMP,
    claim           TEXT CHECK (length(claim) = 36)
);
INSERT INTO mail_outbox_old SELECT id, kind, user_id, recipient, data, created_at, next_attempt_at, attempts,
    claimed_until, last_error, dead_at, claim FROM mail_outbox WHERE kind <> 'factor_changed';
DROP TABLE mail_outbox;
ALTER TABLE mail_outbox_old RENAME TO mail_outbox;
CREATE INDEX ix_mail_outbox_due ON mail_outbox (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX ix_mail_outbox_user_id ON mail_outbox (user_id);
