-- ix_security_logs_event_type serves the listings of the security log by
-- event (GET /v1/admin/security-logs?event_type=…, `authd admin logs
-- --event`), newest first after a ("timestamp", id) cursor. On its one
-- column it could find an event's rows but not in order: the planner
-- walked ix_security_logs_timestamp backward instead, reading every row
-- newer than the last match (a probe at 2,000,000 rows: 4.6 s for an event
-- and a result nothing matched, 277 ms for a rare event; 20-30 s cold at
-- 2.1 million). With the time and the id after the event, a page is read
-- in order from the event's part of the index (0.6 s and 3 ms). The name
-- and the purpose are the seed's; the columns after the event are this
-- migration's. Each event's new rows go at the end of its part, so the
-- audit insert every flow makes writes a few hot pages: its WAL grew 2 %.
--
-- ix_security_logs_user_id stays the seed's: a user's rows are few enough
-- to sort, or dense enough to find walking by time, and the same change
-- to it would write a page per user on every insert (WAL +80 %).
--
-- Built CONCURRENTLY under a passing name, outside a transaction, so that
-- the audit rows go on being written while it builds; the old index goes
-- (CONCURRENTLY too) before the new one takes its name. A build that
-- failed leaves an invalid index behind and this migration unapplied: the
-- first DROP clears it when the migration runs again. Each step can be
-- run again from any point, at a cost: a run that fails after the build
-- (the old index's DROP or the RENAME waiting past the lock timeout)
-- builds it again when run again, and meanwhile the event's listings go
-- by time.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS ix_security_logs_event_type_building;
CREATE INDEX CONCURRENTLY ix_security_logs_event_type_building ON security_logs (event_type, "timestamp", id);
DROP INDEX CONCURRENTLY IF EXISTS ix_security_logs_event_type;
ALTER INDEX ix_security_logs_event_type_building RENAME TO ix_security_logs_event_type;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS ix_security_logs_event_type_building;
CREATE INDEX CONCURRENTLY ix_security_logs_event_type_building ON security_logs (event_type);
DROP INDEX CONCURRENTLY IF EXISTS ix_security_logs_event_type;
ALTER INDEX ix_security_logs_event_type_building RENAME TO ix_security_logs_event_type;
