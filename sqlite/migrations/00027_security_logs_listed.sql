-- ix_security_logs_event_type serves the listings of the security log by
-- event, newest first after a ("timestamp", id) cursor: with the time and
-- the id after the event, a page is read in order from the event's part of
-- the index, rather than every match read and sorted (as on PostgreSQL,
-- migration 27 there). The name and the purpose are the seed's.

-- +goose Up
DROP INDEX ix_security_logs_event_type;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type, "timestamp", id);

-- +goose Down
DROP INDEX ix_security_logs_event_type;
CREATE INDEX ix_security_logs_event_type ON security_logs (event_type);
