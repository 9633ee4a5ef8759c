package sqlite

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

func TestErasures(t *testing.T) {
	storetest.Erasures(t, func(t *testing.T) storetest.ErasureStore { return erasureStore{openMigrated(t)} })
}

// erasureStore is a store with the hooks of storetest.ErasureStore.
type erasureStore struct{ *Store }

// LogRows stamps the rows in whole seconds, as the store writes them
// (timeLayout), runs of seven sharing one, so that FinishErasure's
// batches end among rows of one time.
func (s erasureStore) LogRows(t testing.TB, user uuid.UUID, n int, at time.Time) {
	t.Helper()
	s.exec(t, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
		INSERT INTO security_logs (id, event_type, user_id, "timestamp", ip_address, user_agent, result, additional_context)
		SELECT lower(hex(randomblob(4))) || '-0000-4000-8000-' || printf('%012x', i), 'token_refreshed', ?2,
			strftime('%Y-%m-%dT%H:%M:%S.000000Z', ?3, printf('+%d seconds', i / 7)), '192.0.2.7', 'curl/8', 'success',
			json_object('device_info', 'phone', 'session_id', 's' || i)
		FROM n`, n, user, timeText(at))
}

func (s erasureStore) ClientRows(t testing.TB, user uuid.UUID) int {
	t.Helper()
	return s.count(t, `SELECT count(*) FROM security_logs WHERE user_id = ?
		AND (ip_address IS NOT NULL OR user_agent IS NOT NULL OR additional_context -> '$.device_info' IS NOT NULL)`, user)
}

func (s erasureStore) SessionRows(t testing.TB, user uuid.UUID) int {
	t.Helper()
	return s.count(t, `SELECT count(*) FROM security_logs WHERE user_id = ?
		AND additional_context ->> '$.session_id' IS NOT NULL`, user)
}

func (s erasureStore) PendingErasures(t testing.TB, user uuid.UUID) int {
	t.Helper()
	return s.count(t, `SELECT count(*) FROM erasures_pending WHERE user_id = ?`, user)
}

// CutErasureShort ends FinishErasure's context once its first batch is
// written: that batch stays cleared, and the rest hold their client.
func (s erasureStore) CutErasureShort(t testing.TB, user uuid.UUID, rows int) {
	t.Helper()
	stopped, cancel := context.WithCancel(context.Background())
	cut := *s.Store
	cut.queries = queries{db: cancelAfterExec{dbtx: s.queries.db, cancel: cancel}}
	if err := cut.FinishErasure(stopped, user); err == nil {
		t.Fatal("FinishErasure went on past its context's end")
	}
	if n := s.ClientRows(t, user); n == 0 || n == rows {
		t.Fatalf("%d rows hold a client after one batch of %d; want some", n, rows)
	}
}

// RefuseClearing is a trigger that raises on the writes.
func (s erasureStore) RefuseClearing(t testing.TB, user uuid.UUID) {
	t.Helper()
	s.exec(t, `CREATE TRIGGER refuse_clearing BEFORE UPDATE ON security_logs
		WHEN OLD.user_id = '`+user.String()+`' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`)
}

// RefuseDeletingLogs is a trigger that raises on the deletes.
func (s erasureStore) RefuseDeletingLogs(t testing.TB) {
	t.Helper()
	s.exec(t, `CREATE TRIGGER refuse_deleting BEFORE DELETE ON security_logs
		BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`)
}

// RefuseFinishing is a trigger that raises on the delete while the
// account's row is there: a deleted account's cascade runs once its row
// is gone. It is dropped to lift.
func (s erasureStore) RefuseFinishing(t testing.TB, user uuid.UUID) (lift func()) {
	t.Helper()
	s.exec(t, `CREATE TRIGGER refuse_finishing BEFORE DELETE ON erasures_pending
		WHEN OLD.user_id = '`+user.String()+`' AND EXISTS (SELECT 1 FROM users WHERE id = OLD.user_id)
		BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`)
	return func() { s.exec(t, `DROP TRIGGER refuse_finishing`) }
}

func (s erasureStore) Exec(t testing.TB, query string) {
	t.Helper()
	s.exec(t, query)
}

func (s erasureStore) exec(t testing.TB, query string, args ...any) {
	t.Helper()
	if _, err := s.db.ExecContext(context.Background(), query, args...); err != nil {
		t.Fatal(err)
	}
}

// count runs a count(*) query about user.
func (s erasureStore) count(t testing.TB, query string, user uuid.UUID) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(context.Background(), query, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// logRows is erasureStore.LogRows at storetest.Epoch.
func logRows(t testing.TB, s *Store, user uuid.UUID, n int) {
	t.Helper()
	erasureStore{s}.LogRows(t, user, n, storetest.Epoch)
}

// TestFinishErasureClearsInBatches: FinishErasure clears an account's
// security-log rows in writes of erasureBatch rows at most (one UPDATE of
// them all held every writer), some ending among rows of one timestamp,
// the last unbounded, and clears every one of them.
func TestFinishErasureClearsInBatches(t *testing.T) {
	ctx := context.Background()
	s, u := migratedWithUser(t, "erased@example.org")
	rows := 2*erasureBatch + 3
	logRows(t, s, u.ID, rows)
	storetest.Erase(t, s, u)
	counted := &rowCounts{dbtx: s.queries.db}
	batched := *s
	batched.queries = queries{db: counted}
	if err := batched.FinishErasure(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if n := (erasureStore{s}).ClientRows(t, u.ID); n != 0 {
		t.Errorf("%d of %d rows of the erased account still hold a client", n, rows)
	}
	if len(counted.rows) < 3 || slices.Max(counted.rows) > erasureBatch {
		t.Errorf("rows cleared a write: %v; want batches of %d at most", counted.rows, erasureBatch)
	}
}

// TestErasuresPendingMigratedDown: migrating below 29 clears the rows of
// the erasures still pending before their table goes.
func TestErasuresPendingMigratedDown(t *testing.T) {
	ctx := context.Background()
	s, u := migratedWithUser(t, "down@example.org")
	logRows(t, s, u.ID, 3)
	storetest.Erase(t, s, u)
	current, _, err := s.Migrator().Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrator().Down(ctx, int(current-28)); err != nil {
		t.Fatal(err)
	}
	if n := (erasureStore{s}).ClientRows(t, u.ID); n != 0 {
		t.Errorf("%d rows of a pending erasure hold a client after migrating down", n)
	}
}

// cancelAfterExec is a dbtx that ends a context once a statement that
// writes has run.
type cancelAfterExec struct {
	dbtx
	cancel context.CancelFunc
}

func (c cancelAfterExec) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	defer c.cancel()
	return c.dbtx.ExecContext(ctx, query, args...)
}

// BenchmarkFinishErasure: one op clears an account of 100,000 security-log
// rows among 100,000 of another; lane-ns/batch is the time each of its
// writes held the writer lane, rows/s its rate.
func BenchmarkFinishErasure(b *testing.B) {
	const rows = 100000
	ctx := context.Background()
	s, u := migratedWithUser(b, "erased@example.org")
	other := storetest.NewUser("kept@example.org")
	if err := s.CreateUser(ctx, other); err != nil {
		b.Fatal(err)
	}
	logRows(b, s, other.ID, rows)
	lane := &laneTime{dbtx: s.queries.db}
	timed := *s
	timed.queries = queries{db: lane}
	var total time.Duration
	for i := range b.N {
		b.StopTimer()
		if _, err := s.db.ExecContext(ctx, `DELETE FROM security_logs WHERE user_id = ?`, u.ID); err != nil {
			b.Fatal(err)
		}
		logRows(b, s, u.ID, rows)
		if i == 0 {
			storetest.Erase(b, s, u)
		} else if _, err := s.db.ExecContext(ctx, `INSERT INTO erasures_pending (user_id) VALUES (?)`, u.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := timed.FinishErasure(ctx, u.ID); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.StopTimer()
	if n := (erasureStore{s}).ClientRows(b, u.ID); n != 0 {
		b.Fatalf("%d rows left", n)
	}
	b.ReportMetric(float64(lane.held.Nanoseconds())/float64(b.N*(rows/erasureBatch+2)), "lane-ns/batch")
	b.ReportMetric(float64(b.N*rows)/total.Seconds(), "rows/s")
}
