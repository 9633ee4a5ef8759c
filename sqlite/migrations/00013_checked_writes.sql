-- Nothing to do on SQLite. PostgreSQL's migration 13 adds authd_expect_rows,
-- which fails a transaction's write that changed fewer rows than it must
-- before the COMMIT sent with it runs; SQLite runs each write at once, and
-- the flow's error rolls its transaction back. The number is kept so that
-- both stores count their migrations alike.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
