-- The SQL of one refresh (bench/index-costs.sh): the locking read, the rotation with the
-- session's last use, the new refresh row and the audit row, :n times, one transaction each,
-- in one backend. Prints the time and the WAL written per refresh.
\set ON_ERROR_STOP on
SELECT id AS uid FROM users WHERE email = 'active@demo.authd.dev' \gset
-- a fresh session and its first token
INSERT INTO sessions (id, user_id, device_info, created_at, last_used_at, expires_at, amr)
  VALUES ('00000000-0000-7000-8000-000000000001', :'uid', 'bench', now(), now(), now() + interval '30 days', 'pwd')
  ON CONFLICT (id) DO NOTHING;
TRUNCATE jwt_tokens, security_logs;
VACUUM ANALYZE sessions;
INSERT INTO jwt_tokens (id, jti, user_id, session_id, token_type, token_value, issued_at, expires_at, revoked, device_info, created_at)
  VALUES (gen_random_uuid(), gen_random_uuid()::text, :'uid', '00000000-0000-7000-8000-000000000001', 'refresh', 'bench-0', now(), now() + interval '7 days', false, 'bench', now());
CHECKPOINT;
-- This session only, and only here: the loop measures the server's work per refresh, not
-- the disk's flush latency (authd itself never turns synchronous_commit off).
SET synchronous_commit = off;
SELECT pg_current_wal_insert_lsn() AS lsn0 \gset
SELECT set_config('bench.n', :'n', false) \g /dev/null
\timing on
DO $$
DECLARE
  t record; parent uuid;
BEGIN
  FOR k IN 1..current_setting('bench.n')::int LOOP
    SELECT tt.id, tt.user_id, tt.session_id INTO t FROM jwt_tokens tt JOIN sessions s ON s.id = tt.session_id JOIN users u ON u.id = tt.user_id
      WHERE tt.token_value = 'bench-' || (k - 1) AND tt.token_type = 'refresh' FOR UPDATE OF tt, s;
    WITH token AS (UPDATE jwt_tokens SET revoked = true, revoked_at = now(), rotated_at = now() WHERE id = t.id RETURNING id)
      UPDATE sessions SET last_used_at = now(), revoked_at = NULL WHERE id = t.session_id AND EXISTS (SELECT 1 FROM token);
    INSERT INTO jwt_tokens (id, jti, user_id, session_id, parent_id, token_type, token_value, issued_at, expires_at, revoked, device_info, created_at)
      VALUES (gen_random_uuid(), gen_random_uuid()::text, t.user_id, t.session_id, t.id, 'refresh', 'bench-' || k, now(), now() + interval '7 days', false, 'bench', now());
    INSERT INTO security_logs (id, event_type, user_id, "timestamp", ip_address, user_agent, result, additional_context)
      VALUES (gen_random_uuid(), 'token_refreshed', t.user_id, now(), '127.0.0.1', 'bench', 'success', jsonb_build_object('session_id', t.session_id::text, 'retry', false));
    COMMIT;
  END LOOP;
END $$;
\timing off
SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'lsn0') / :n) AS wal_per_refresh;
