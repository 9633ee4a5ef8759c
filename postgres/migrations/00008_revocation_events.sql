-- The revocation feed (issue 11): resource servers learn revocations from
-- GET /v1/auth/revocations and resume after a cut with Last-Event-ID, so
-- every revocation needs a durable id in commit order.
--
-- One row per revoked session (kind 'session', subject_id = the session)
-- and, when every session of a user ends at once (logout-all, password
-- reset, an administrator's lock or revoke, erasure), one more for the user
-- (kind 'user', subject_id = the user): tokens of that user issued before
-- created_at are revoked. expires_at is when the last access token the
-- revocation can affect expires (created_at + the access-token lifetime +
-- the 30 s skew leeway); retention deletes rows past it and the feed never
-- serves them. reason is the flow that revoked (for operators).
--
-- Ids are handed out in commit order: the revoking transaction inserts its
-- rows last, under a transaction-level advisory lock held until it commits,
-- so a reader that has seen id N will never later see a smaller one.

-- +goose Up
CREATE TABLE revocation_events (
    id          bigserial PRIMARY KEY,
    kind        varchar(16) NOT NULL CHECK (kind IN ('session', 'user')),
    subject_id  uuid NOT NULL,
    reason      varchar(64) NOT NULL DEFAULT '',
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX ix_revocation_events_expires_at ON revocation_events (expires_at);

-- +goose Down
DROP TABLE revocation_events;
