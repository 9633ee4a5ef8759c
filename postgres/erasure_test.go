package postgres_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

func TestErasures(t *testing.T) {
	t.Parallel()
	storetest.Erasures(t, func(t *testing.T) storetest.ErasureStore { return erasureStore{open(t)} })
}

// erasureStore is a store with the hooks of storetest.ErasureStore.
type erasureStore struct{ *postgres.Store }

func (s erasureStore) LogRows(t testing.TB, user uuid.UUID, n int, at time.Time) {
	t.Helper()
	s.exec(t, `INSERT INTO security_logs
		(id, event_type, user_id, "timestamp", ip_address, user_agent, result, additional_context)
		SELECT gen_random_uuid(), 'token_refreshed', $1, $2, '192.0.2.7', 'curl/8', 'success',
			jsonb_build_object('device_info', 'phone', 'session_id', 's' || i)
		FROM generate_series(1, $3) i`, user, at, n)
}

func (s erasureStore) ClientRows(t testing.TB, user uuid.UUID) int {
	t.Helper()
	return s.count(t, `SELECT count(*) FROM security_logs WHERE user_id = $1
		AND (ip_address IS NOT NULL OR user_agent IS NOT NULL OR additional_context ? 'device_info')`, user)
}

func (s erasureStore) SessionRows(t testing.TB, user uuid.UUID) int {
	t.Helper()
	return s.count(t, `SELECT count(*) FROM security_logs WHERE user_id = $1 AND additional_context ? 'session_id'`, user)
}

func (s erasureStore) PendingErasures(t testing.TB, user uuid.UUID) int {
	t.Helper()
	return s.count(t, `SELECT count(*) FROM erasures_pending WHERE user_id = $1`, user)
}

// CutErasureShort runs FinishErasure on a context already ended: one cut
// short leaves every row as it was (its one transaction rolls back) and
// the account named.
func (s erasureStore) CutErasureShort(t testing.TB, user uuid.UUID, rows int) {
	t.Helper()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.FinishErasure(stopped, user); err == nil {
		t.Fatal("FinishErasure ran past its context's end")
	}
	if n := s.ClientRows(t, user); n != rows {
		t.Fatalf("after a clearing cut short %d rows hold a client; want all %d", n, rows)
	}
}

// RefuseClearing is a trigger that raises on the writes.
func (s erasureStore) RefuseClearing(t testing.TB, user uuid.UUID) {
	t.Helper()
	s.refuse(t, "refuse_clearing", "BEFORE UPDATE ON security_logs", "OLD.user_id = '"+user.String()+"'")
}

// RefuseDeletingLogs is a trigger that raises on the deletes.
func (s erasureStore) RefuseDeletingLogs(t testing.TB) {
	t.Helper()
	s.refuse(t, "refuse_deleting", "BEFORE DELETE ON security_logs", "true")
}

// RefuseFinishing is a trigger that raises on the delete, unless inside
// the foreign key's trigger (pg_trigger_depth), and is dropped to lift.
func (s erasureStore) RefuseFinishing(t testing.TB, user uuid.UUID) (lift func()) {
	t.Helper()
	s.refuse(t, "refuse_finishing", "BEFORE DELETE ON erasures_pending",
		"OLD.user_id = '"+user.String()+"' AND pg_trigger_depth() = 0")
	return func() { s.exec(t, `DROP TRIGGER refuse_finishing ON erasures_pending`) }
}

func (s erasureStore) Exec(t testing.TB, query string) {
	t.Helper()
	s.exec(t, query)
}

// refuse makes the statements that fire the row trigger name (when, e.g.
// "BEFORE DELETE ON security_logs") fail with a disk error where cond holds.
func (s erasureStore) refuse(t testing.TB, name, when, cond string) {
	t.Helper()
	s.exec(t, `CREATE FUNCTION `+name+`() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'disk I/O error'; END $$;
		CREATE TRIGGER `+name+` `+when+` FOR EACH ROW WHEN (`+cond+`) EXECUTE FUNCTION `+name+`()`)
}

func (s erasureStore) exec(t testing.TB, query string, args ...any) {
	t.Helper()
	if _, err := s.Pool().Exec(context.Background(), query, args...); err != nil {
		t.Fatal(err)
	}
}

// count runs a count(*) query about user.
func (s erasureStore) count(t testing.TB, query string, user uuid.UUID) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), query, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// erased is a store with an erasure pending of an account of three
// security-log rows holding a client.
func erased(t *testing.T, email string) (erasureStore, *authd.User) {
	t.Helper()
	s := erasureStore{open(t)}
	u := storetest.NewUser(email)
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	s.LogRows(t, u.ID, 3, storetest.Epoch)
	storetest.Erase(t, s, u)
	return s, u
}

// TestRetentionPastALockedErasure: an erasure pending whose rows a
// transaction holds waits for them no longer than the purge's batches do
// (it waited for ever, under the purge's lock): it is left pending for
// the next run, which finishes it, and the purge goes on and says so.
func TestRetentionPastALockedErasure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang fails, not stalls, the test
	defer cancel()
	s, u := erased(t, "held@example.org")
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM security_logs WHERE user_id = $1 LIMIT 1 FOR UPDATE`, u.ID); err != nil {
		t.Fatal(err)
	}
	at := storetest.Epoch
	req := authd.PurgeRequest{LogsBefore: at.Add(-90 * 24 * time.Hour), ExpiredBefore: at.Add(-24 * time.Hour), Now: at}
	res, err := s.Purge(ctx, req)
	if err != nil || !slices.Contains(res.Deferred, "erasures_pending") || s.PendingErasures(t, u.ID) != 1 {
		t.Fatalf("Purge past a held erasure = %+v, %v; want it deferred and pending", res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(ctx, req); err != nil || slices.Contains(res.Deferred, "erasures_pending") {
		t.Fatalf("Purge once the rows are free = %+v, %v", res, err)
	}
	if n, pending := s.ClientRows(t, u.ID), s.PendingErasures(t, u.ID); n != 0 || pending != 0 {
		t.Errorf("after the next purge %d rows hold a client, %d pending; want 0, 0", n, pending)
	}
}

// TestErasuresPendingMigratedDown: migrating below 31 clears the rows of
// the erasures still pending before their table goes.
func TestErasuresPendingMigratedDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, u := erased(t, "down@example.org")
	current, _, err := s.Migrator().Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrator().Down(ctx, int(current-30)); err != nil {
		t.Fatal(err)
	}
	if n := s.ClientRows(t, u.ID); n != 0 {
		t.Errorf("%d rows of a pending erasure hold a client after migrating down", n)
	}
}
