-- SQLite's migration 23 lets NULL pass the checks of its nullable JSON
-- columns in every SQLite version. PostgreSQL's jsonb columns never had
-- the problem (a CHECK on NULL is NULL, which passes): nothing to do here,
-- so that both dialects stay at one version.

-- +goose Up
SELECT 1;

-- +goose Down
SELECT 1;
