-- jwt_tokens.parent_id (an extra column: the refresh token a pair was
-- rotated from) stays as lineage for investigations and the GDPR export, but
-- loses its foreign key and the index that served only that key.
--
-- Nothing reads tokens by parent. The key's one effect was to set a child's
-- parent_id to NULL when the retention purge deletes the parent; for that,
-- every refresh paid a foreign-key check (a lookup and a share lock of the
-- parent) and two entries in ix_jwt_tokens_parent_id (the new row's, and the
-- rotated parent's new version: rotation changes `revoked`, which the seed
-- indexes, so it is never a HOT update). Measured with bench/index-costs.sh
-- (docs/performance.md): 11 % of the server time of a refresh's writes and
-- 7 % of its WAL. A parent_id may now name a token the purge has removed.

-- +goose Up
ALTER TABLE jwt_tokens DROP CONSTRAINT jwt_tokens_parent_id_fkey;
DROP INDEX ix_jwt_tokens_parent_id;

-- +goose Down
UPDATE jwt_tokens c SET parent_id = NULL
    WHERE parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jwt_tokens p WHERE p.id = c.parent_id);
CREATE INDEX ix_jwt_tokens_parent_id ON jwt_tokens (parent_id);
ALTER TABLE jwt_tokens ADD CONSTRAINT jwt_tokens_parent_id_fkey
    FOREIGN KEY (parent_id) REFERENCES jwt_tokens (id) ON DELETE SET NULL;
