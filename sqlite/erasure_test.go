package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// logRows inserts n security-log rows about user holding a client (IP,
// user agent, device), in one statement: a timestamp (whole seconds, as
// the store writes them: timeLayout) shared by runs of seven rows, so that
// FinishErasure's batches end among rows of one time.
func logRows(t testing.TB, s *Store, user uuid.UUID, n int) {
	t.Helper()
	if _, err := s.db.ExecContext(context.Background(), `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
		INSERT INTO security_logs (id, event_type, user_id, "timestamp", ip_address, user_agent, result, additional_context)
		SELECT lower(hex(randomblob(4))) || '-0000-4000-8000-' || printf('%012x', i), 'token_refreshed', ?2,
			strftime('%Y-%m-%dT%H:%M:%S.000000Z', ?3, printf('+%d seconds', i / 7)), '192.0.2.7', 'curl/8', 'success',
			json_object('device_info', 'phone', 'session_id', 's' || i)
		FROM n`, n, user, timeText(storetest.Epoch)); err != nil {
		t.Fatal(err)
	}
}

// addUser adds an account of email to s.
func addUser(t testing.TB, s *Store, email string) *authd.User {
	t.Helper()
	u := storetest.NewUser(email)
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

// clientRows counts the user's security-log rows that still hold a client.
func clientRows(t testing.TB, s *Store, user uuid.UUID) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(context.Background(), `SELECT count(*) FROM security_logs WHERE user_id = ?
		AND (ip_address IS NOT NULL OR user_agent IS NOT NULL OR additional_context -> '$.device_info' IS NOT NULL)`,
		user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// pendingErasures counts the user's erasures_pending rows.
func pendingErasures(t testing.TB, s *Store, user uuid.UUID) int {
	t.Helper()
	var n int
	if err := s.db.QueryRowContext(context.Background(), `SELECT count(*) FROM erasures_pending WHERE user_id = ?`,
		user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestErasureClearsLogsAfterItsTransaction: an erasure's transaction
// leaves the account's security-log rows to FinishErasure (one UPDATE of
// them all held every writer), which clears every one of them in its
// batches, some ending among rows of one timestamp, and only the client:
// another user's rows keep theirs, and the rows keep the rest of their
// context.
func TestErasureClearsLogsAfterItsTransaction(t *testing.T) {
	ctx := context.Background()
	s, u := migratedWithUser(t, "erased@example.org")
	other := addUser(t, s, "kept@example.org")
	rows := 2*erasureBatch + 3
	logRows(t, s, u.ID, rows)
	logRows(t, s, other.ID, 10)

	storetest.Erase(t, s, u)
	if n := clientRows(t, s, u.ID); n != rows {
		t.Fatalf("the transaction cleared %d of %d rows; want them left to FinishErasure", rows-n, rows)
	}
	if pendingErasures(t, s, u.ID) != 1 {
		t.Fatal("the transaction did not record the erasure as pending")
	}
	// A row logged since keeps no client.
	if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(storetest.Epoch, authd.EventLoginFailure, authd.ResultFailure,
		u.ID, "192.0.2.8", "curl/8", "no account", map[string]any{"device_info": "laptop"})); err != nil {
		t.Fatal(err)
	}
	if n := clientRows(t, s, u.ID); n != rows {
		t.Fatalf("%d rows hold a client after one logged since the erasure; want %d", n, rows)
	}

	counted := &rowCounts{dbtx: s.queries.db}
	batched := *s
	batched.queries = queries{db: counted}
	if err := batched.FinishErasure(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if n := clientRows(t, s, u.ID); n != 0 {
		t.Errorf("%d rows of the erased account still hold a client", n)
	}
	if len(counted.rows) < 3 || slices.Max(counted.rows) > erasureBatch {
		t.Errorf("rows cleared a write: %v; want batches of %d at most", counted.rows, erasureBatch)
	}
	if n := clientRows(t, s, other.ID); n != 10 {
		t.Errorf("another account's rows holding a client: %d, want 10", n)
	}
	var kept int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM security_logs WHERE user_id = ? AND additional_context ->> '$.session_id' IS NOT NULL`,
		u.ID).Scan(&kept); err != nil || kept != rows {
		t.Errorf("rows keeping the rest of their context: %d, %v; want %d", kept, err, rows)
	}
	if pendingErasures(t, s, u.ID) != 0 {
		t.Error("the finished erasure is still pending")
	}
	// Again: nothing left to do.
	if err := s.FinishErasure(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
}

// TestRetentionFinishesErasures: an erasure whose clearing was cut short
// (a crash, a stop, its time budget) is finished by the next purge, and
// not by a dry run, which writes nothing.
func TestRetentionFinishesErasures(t *testing.T) {
	ctx := context.Background()
	s, u := migratedWithUser(t, "cut-short@example.org")
	logRows(t, s, u.ID, erasureBatch+1)
	storetest.Erase(t, s, u)
	// The clearing stops at its first batch.
	stopped, cancel := context.WithCancel(ctx)
	cut := *s
	cut.queries = queries{db: cancelAfterExec{dbtx: s.queries.db, cancel: cancel}}
	if err := cut.FinishErasure(stopped, u.ID); err == nil {
		t.Fatal("FinishErasure went on past its context's end")
	}
	if n := clientRows(t, s, u.ID); n == 0 || n == erasureBatch+1 {
		t.Fatalf("%d rows hold a client after one batch of %d; want some", n, erasureBatch+1)
	}

	at := storetest.Epoch
	req := authd.PurgeRequest{LogsBefore: at.Add(-90 * 24 * time.Hour), ExpiredBefore: at.Add(-24 * time.Hour), Now: at}
	req.DryRun = true
	if _, err := s.Purge(ctx, req); err != nil {
		t.Fatal(err)
	}
	if clientRows(t, s, u.ID) == 0 || pendingErasures(t, s, u.ID) != 1 {
		t.Fatal("a dry run finished the erasure")
	}
	req.DryRun = false
	if _, err := s.Purge(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := clientRows(t, s, u.ID); n != 0 {
		t.Errorf("after the purge %d rows still hold a client", n)
	}
	if pendingErasures(t, s, u.ID) != 0 {
		t.Error("the erasure is still pending after the purge")
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
	if n := clientRows(t, s, u.ID); n != 0 {
		t.Errorf("%d rows of a pending erasure hold a client after migrating down", n)
	}
}

// TestRetentionPastAFailingErasure: an erasure whose clearing keeps
// failing (the disk, a row the statement cannot write) is reported by
// every purge, and stops neither the other erasures nor retention.
func TestRetentionPastAFailingErasure(t *testing.T) {
	ctx := context.Background()
	s, stuck := migratedWithUser(t, "stuck@example.org")
	other := addUser(t, s, "other@example.org")
	for _, u := range []*authd.User{stuck, other} {
		logRows(t, s, u.ID, 3)
		storetest.Erase(t, s, u)
	}
	old := storetest.Epoch.Add(-100 * 24 * time.Hour)
	if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(old, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
		"", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	failing := *s
	failing.queries = queries{db: failWrites{dbtx: s.queries.db, prefix: "UPDATE security_logs", user: stuck.ID.String()}}
	at := storetest.Epoch
	res, err := failing.Purge(ctx, authd.PurgeRequest{LogsBefore: at.Add(-90 * 24 * time.Hour), ExpiredBefore: at.Add(-24 * time.Hour), Now: at})
	if err == nil || !strings.Contains(err.Error(), stuck.ID.String()) {
		t.Errorf("a purge past a failing erasure: %v; want its error, naming the account", err)
	}
	if res.SecurityLogs != 1 {
		t.Errorf("the purge deleted %d old rows past the failing erasure; want 1", res.SecurityLogs)
	}
	if n := clientRows(t, s, other.ID); n != 0 || pendingErasures(t, s, other.ID) != 0 {
		t.Errorf("another erasure behind the failing one: %d rows hold a client", n)
	}
	if pendingErasures(t, s, stuck.ID) != 1 {
		t.Error("the failing erasure is no longer pending")
	}
}

// erasedLongAgo erases an account of three security-log rows holding a
// client, its erasure left pending, with the account's row and its log
// rows past a 90-day retention at storetest.Epoch, and returns the purge
// request of that retention.
func erasedLongAgo(t *testing.T, email string) (*Store, *authd.User, authd.PurgeRequest) {
	t.Helper()
	ctx := context.Background()
	s, u := migratedWithUser(t, email)
	logRows(t, s, u.ID, 3)
	storetest.Erase(t, s, u)
	at := storetest.Epoch
	old := timeText(at.Add(-100 * 24 * time.Hour))
	if _, err := s.db.ExecContext(ctx, `UPDATE users SET updated_at = ?2 WHERE id = ?1`, u.ID, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE security_logs SET "timestamp" = ?2 WHERE user_id = ?1`, u.ID, old); err != nil {
		t.Fatal(err)
	}
	return s, u, authd.PurgeRequest{LogsBefore: at.Add(-90 * 24 * time.Hour), ExpiredBefore: at.Add(-24 * time.Hour), Now: at}
}

// TestRetentionFinishesErasuresPastTheOldRows: a purge finishes the
// erasures pending once the rows past retention are gone, so that it
// clears none of those (here every clearing of the account's rows, all
// past retention, fails: a trigger refuses it; the erasure finishes with
// none to clear), and the tombstone goes in the same run.
func TestRetentionFinishesErasuresPastTheOldRows(t *testing.T) {
	ctx := context.Background()
	s, u, req := erasedLongAgo(t, "old-rows@example.org")
	if _, err := s.db.ExecContext(ctx, `CREATE TRIGGER refuse_clearing BEFORE UPDATE ON security_logs
		WHEN OLD.user_id = '`+u.ID.String()+`' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`); err != nil {
		t.Fatal(err)
	}
	res, err := s.Purge(ctx, req)
	if err != nil || res.SecurityLogs != 3 || res.ErasedAccounts != 1 {
		t.Errorf("Purge = %+v, %v; want the 3 old rows and the tombstone deleted, no clearing", res, err)
	}
	if pendingErasures(t, s, u.ID) != 0 {
		t.Error("the erasure is still pending")
	}
}

// TestRetentionFinishesErasuresPastAFailingStep: a security_logs step that
// fails (here a trigger refuses every delete) still lets the purge finish
// the erasures pending, and answers the step's error.
func TestRetentionFinishesErasuresPastAFailingStep(t *testing.T) {
	ctx := context.Background()
	s, u, req := erasedLongAgo(t, "failing-step@example.org")
	if _, err := s.db.ExecContext(ctx, `CREATE TRIGGER refuse_deleting BEFORE DELETE ON security_logs
		BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(ctx, req); err == nil || !strings.Contains(err.Error(), "disk I/O error") {
		t.Errorf("a purge whose security_logs step fails: %v; want the step's error", err)
	}
	if n := clientRows(t, s, u.ID); n != 0 || pendingErasures(t, s, u.ID) != 0 {
		t.Errorf("after the failing purge %d rows hold a client, %d pending; want the erasure finished", n, pendingErasures(t, s, u.ID))
	}
}

// TestRetentionFinishesErasuresPastAFailingHeadRead: a purge whose first
// read, the revocation feed's head, fails (here its table is gone) still
// finishes the erasures pending, and fails.
func TestRetentionFinishesErasuresPastAFailingHeadRead(t *testing.T) {
	ctx := context.Background()
	s, u, req := erasedLongAgo(t, "failing-head@example.org")
	if _, err := s.db.ExecContext(ctx, `ALTER TABLE revocation_events RENAME TO revocation_events_gone`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge(ctx, req); err == nil {
		t.Error("a purge whose head read fails answered no error")
	}
	if n := clientRows(t, s, u.ID); n != 0 || pendingErasures(t, s, u.ID) != 0 {
		t.Errorf("after the failing purge %d rows hold a client, %d pending; want the erasure finished", n, pendingErasures(t, s, u.ID))
	}
}

// TestRetentionKeepsAPendingErasuresAccount: an erased account's tombstone
// past retention stays while its erasure is pending (deleting it would
// drop the pending row with it, and the purges' errors, which name the
// account, would stop), and goes with the first purge after its erasure
// finishes. The fault: the pending row's delete fails.
func TestRetentionKeepsAPendingErasuresAccount(t *testing.T) {
	ctx := context.Background()
	s, u, req := erasedLongAgo(t, "stuck-long@example.org")
	failing := *s
	failing.queries = queries{db: failWrites{dbtx: s.queries.db, prefix: "DELETE FROM erasures_pending", user: u.ID.String()}}
	res, err := failing.Purge(ctx, req)
	if err == nil || !strings.Contains(err.Error(), u.ID.String()) {
		t.Errorf("a purge past a failing erasure: %v; want its error, naming the account", err)
	}
	if res.ErasedAccounts != 0 || pendingErasures(t, s, u.ID) != 1 {
		t.Fatalf("the purge deleted %d tombstones, %d erasures pending; want the failing one's kept and pending",
			res.ErasedAccounts, pendingErasures(t, s, u.ID))
	}
	if _, err := s.User(ctx, u.ID); err != nil {
		t.Fatalf("the tombstone of a pending erasure after the purge: %v", err)
	}

	if res, err := s.Purge(ctx, req); err != nil || res.ErasedAccounts != 1 {
		t.Fatalf("the purge after the erasure finishes = %+v, %v; want its tombstone deleted", res, err)
	}
}

// failWrites is a dbtx whose statements that begin with prefix and name
// user first fail.
type failWrites struct {
	dbtx
	prefix, user string
}

func (f failWrites) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if strings.HasPrefix(query, f.prefix) && len(args) > 0 && fmt.Sprint(args[0]) == f.user {
		return nil, errors.New("disk I/O error")
	}
	return f.dbtx.ExecContext(ctx, query, args...)
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
	other := addUser(b, s, "kept@example.org")
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
	if n := clientRows(b, s, u.ID); n != 0 {
		b.Fatalf("%d rows left", n)
	}
	b.ReportMetric(float64(lane.held.Nanoseconds())/float64(b.N*(rows/erasureBatch+2)), "lane-ns/batch")
	b.ReportMetric(float64(b.N*rows)/total.Seconds(), "rows/s")
}
