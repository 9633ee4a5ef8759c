package postgres_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// logRows inserts n security-log rows about user holding a client (IP,
// user agent, device), in one statement.
func logRows(t *testing.T, s *postgres.Store, user uuid.UUID, n int) {
	t.Helper()
	if _, err := s.Pool().Exec(context.Background(), `INSERT INTO security_logs
		(id, event_type, user_id, "timestamp", ip_address, user_agent, result, additional_context)
		SELECT gen_random_uuid(), 'token_refreshed', $1, $2, '192.0.2.7', 'curl/8', 'success',
			jsonb_build_object('device_info', 'phone', 'session_id', 's' || i)
		FROM generate_series(1, $3) i`, user, storetest.Epoch, n); err != nil {
		t.Fatal(err)
	}
}

// addUser adds an account of email to s.
func addUser(t *testing.T, s *postgres.Store, email string) *authd.User {
	t.Helper()
	u := storetest.NewUser(email)
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

// count runs a count(*) query about user.
func count(t *testing.T, s *postgres.Store, query string, user uuid.UUID) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), query, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// clientRows counts the user's security-log rows that still hold a client.
func clientRows(t *testing.T, s *postgres.Store, user uuid.UUID) int {
	t.Helper()
	return count(t, s, `SELECT count(*) FROM security_logs WHERE user_id = $1
		AND (ip_address IS NOT NULL OR user_agent IS NOT NULL OR additional_context ? 'device_info')`, user)
}

// pendingErasures counts the user's erasures_pending rows.
func pendingErasures(t *testing.T, s *postgres.Store, user uuid.UUID) int {
	t.Helper()
	return count(t, s, `SELECT count(*) FROM erasures_pending WHERE user_id = $1`, user)
}

// TestErasureClearsLogsAfterItsTransaction: an erasure's transaction names
// the account in erasures_pending and leaves its security-log rows to
// FinishErasure, after the commit: one statement that took 28 s for an
// account of 1.5 million rows outlived clients' timeouts, and the erasure
// rolled back with the request. FinishErasure clears the client from
// every row of the account (the rest of the row kept) and of no other.
func TestErasureClearsLogsAfterItsTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	u, other := addUser(t, s, "erased@example.org"), addUser(t, s, "kept@example.org")
	const rows = 1000
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

	if err := s.FinishErasure(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if n := clientRows(t, s, u.ID); n != 0 {
		t.Errorf("%d rows of the erased account still hold a client", n)
	}
	if n := clientRows(t, s, other.ID); n != 10 {
		t.Errorf("another account's rows holding a client: %d, want 10", n)
	}
	if n := count(t, s, `SELECT count(*) FROM security_logs WHERE user_id = $1 AND additional_context ? 'session_id'`, u.ID); n != rows {
		t.Errorf("rows keeping the rest of their context: %d; want %d", n, rows)
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
// not by a dry run, which writes nothing. One cut short leaves every row
// as it was and the account named.
func TestRetentionFinishesErasures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	u := addUser(t, s, "cut-short@example.org")
	logRows(t, s, u.ID, 100)
	storetest.Erase(t, s, u)
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.FinishErasure(stopped, u.ID); err == nil {
		t.Fatal("FinishErasure ran past its context's end")
	}
	if n := clientRows(t, s, u.ID); n != 100 || pendingErasures(t, s, u.ID) != 1 {
		t.Fatalf("after a clearing cut short: %d rows hold a client, pending %d; want 100, 1", n, pendingErasures(t, s, u.ID))
	}

	at := storetest.Epoch
	req := authd.PurgeRequest{LogsBefore: at.Add(-90 * 24 * time.Hour), ExpiredBefore: at.Add(-24 * time.Hour), Now: at, DryRun: true}
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

// TestRetentionPastAFailingErasure: an erasure whose clearing keeps
// failing (here a trigger refuses it) is reported by every purge, and
// stops neither the other erasures nor retention.
func TestRetentionPastAFailingErasure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	stuck, other := addUser(t, s, "stuck@example.org"), addUser(t, s, "other@example.org")
	for _, u := range []*authd.User{stuck, other} {
		logRows(t, s, u.ID, 3)
		storetest.Erase(t, s, u)
	}
	refuseClearing(t, s, stuck.ID)
	old := storetest.Epoch.Add(-100 * 24 * time.Hour)
	if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(old, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
		"", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	at := storetest.Epoch
	res, err := s.Purge(ctx, authd.PurgeRequest{LogsBefore: at.Add(-90 * 24 * time.Hour), ExpiredBefore: at.Add(-24 * time.Hour), Now: at})
	if err == nil || !strings.Contains(err.Error(), stuck.ID.String()) {
		t.Errorf("a purge past a failing erasure: %v; want its error, naming the account", err)
	}
	if res.SecurityLogs != 1 {
		t.Errorf("the purge deleted %d old rows past the failing erasure; want 1", res.SecurityLogs)
	}
	if n := clientRows(t, s, other.ID); n != 0 || pendingErasures(t, s, other.ID) != 0 {
		t.Errorf("another erasure beside the failing one: %d rows hold a client", n)
	}
	if pendingErasures(t, s, stuck.ID) != 1 || clientRows(t, s, stuck.ID) != 3 {
		t.Error("the failing erasure is no longer pending, or was cleared in part")
	}
}

// refuseClearing makes every write to the security-log rows of user fail,
// as a trigger that raises: FinishErasure then fails for user.
func refuseClearing(t *testing.T, s *postgres.Store, user uuid.UUID) {
	t.Helper()
	refuse(t, s, "refuse_clearing", "BEFORE UPDATE ON security_logs", "OLD.user_id = '"+user.String()+"'")
}

// refuse makes the statements that fire the row trigger name (when, e.g.
// "BEFORE DELETE ON security_logs") fail with a disk error where cond holds.
func refuse(t *testing.T, s *postgres.Store, name, when, cond string) {
	t.Helper()
	if _, err := s.Pool().Exec(context.Background(), `CREATE FUNCTION `+name+`() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'disk I/O error'; END $$;
		CREATE TRIGGER `+name+` `+when+` FOR EACH ROW WHEN (`+cond+`) EXECUTE FUNCTION `+name+`()`); err != nil {
		t.Fatal(err)
	}
}

// erasedLongAgo erases an account of three security-log rows holding a
// client, its erasure left pending, with the account's row and its log
// rows past a 90-day retention at storetest.Epoch, and returns the purge
// request of that retention.
func erasedLongAgo(t *testing.T, s *postgres.Store, email string) (*authd.User, authd.PurgeRequest) {
	t.Helper()
	ctx := context.Background()
	u := addUser(t, s, email)
	logRows(t, s, u.ID, 3)
	storetest.Erase(t, s, u)
	at := storetest.Epoch
	old := at.Add(-100 * 24 * time.Hour)
	if _, err := s.Pool().Exec(ctx, `UPDATE users SET updated_at = $2 WHERE id = $1`, u.ID, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE security_logs SET "timestamp" = $2 WHERE user_id = $1`, u.ID, old); err != nil {
		t.Fatal(err)
	}
	return u, authd.PurgeRequest{LogsBefore: at.Add(-90 * 24 * time.Hour), ExpiredBefore: at.Add(-24 * time.Hour), Now: at}
}

// TestRetentionFinishesErasuresPastTheOldRows: a purge finishes the
// erasures pending once the rows past retention are gone, so that it
// clears none of those (here a trigger refuses every clearing of the
// account's rows, all past retention: the erasure finishes with none to
// clear), and the tombstone goes in the same run.
func TestRetentionFinishesErasuresPastTheOldRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	u, req := erasedLongAgo(t, s, "old-rows@example.org")
	refuseClearing(t, s, u.ID)
	res, err := s.Purge(ctx, req)
	if err != nil || res.SecurityLogs != 3 || res.ErasedAccounts != 1 {
		t.Errorf("Purge = %+v, %v; want the 3 old rows and the tombstone deleted, no clearing", res, err)
	}
	if pendingErasures(t, s, u.ID) != 0 {
		t.Error("the erasure is still pending")
	}
}

// TestRetentionFinishesErasuresPastAFailingStep: a security_logs step that
// fails (here a trigger refuses every delete; a statement timeout, a disk
// error) still lets the purge finish the erasures pending, and answers
// both: a step failing every run kept them pending for ever.
func TestRetentionFinishesErasuresPastAFailingStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	u, req := erasedLongAgo(t, s, "failing-step@example.org")
	refuse(t, s, "refuse_deleting", "BEFORE DELETE ON security_logs", "true")
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
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	u, req := erasedLongAgo(t, s, "failing-head@example.org")
	if _, err := s.Pool().Exec(ctx, `ALTER TABLE revocation_events RENAME TO revocation_events_gone`); err != nil {
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
// finishes. The fault: a trigger refuses the pending row's delete, but
// not one a deleted account cascades to (pg_trigger_depth: inside the
// foreign key's trigger).
func TestRetentionKeepsAPendingErasuresAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	u, req := erasedLongAgo(t, s, "stuck-long@example.org")
	refuse(t, s, "refuse_finishing", "BEFORE DELETE ON erasures_pending", "pg_trigger_depth() = 0")
	res, err := s.Purge(ctx, req)
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

	if _, err := s.Pool().Exec(ctx, `DROP TRIGGER refuse_finishing ON erasures_pending`); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(ctx, req); err != nil || res.ErasedAccounts != 1 {
		t.Fatalf("the purge after the erasure finishes = %+v, %v; want its tombstone deleted", res, err)
	}
}

// TestRetentionPastALockedErasure: an erasure pending whose rows a
// transaction holds waits for them no longer than the purge's batches do
// (it waited for ever, under the purge's lock): it is left pending for
// the next run, which finishes it, and the purge goes on and says so.
func TestRetentionPastALockedErasure(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang fails, not stalls, the test
	defer cancel()
	s := open(t)
	u := addUser(t, s, "held@example.org")
	logRows(t, s, u.ID, 3)
	storetest.Erase(t, s, u)
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
	if err != nil || !slices.Contains(res.Deferred, "erasures_pending") || pendingErasures(t, s, u.ID) != 1 {
		t.Fatalf("Purge past a held erasure = %+v, %v; want it deferred and pending", res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Purge(ctx, req); err != nil || slices.Contains(res.Deferred, "erasures_pending") {
		t.Fatalf("Purge once the rows are free = %+v, %v", res, err)
	}
	if n := clientRows(t, s, u.ID); n != 0 || pendingErasures(t, s, u.ID) != 0 {
		t.Errorf("after the next purge %d rows hold a client, %d pending; want 0, 0", n, pendingErasures(t, s, u.ID))
	}
}

// TestErasuresPendingMigratedDown: migrating below 31 clears the rows of
// the erasures still pending before their table goes.
func TestErasuresPendingMigratedDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t)
	u := addUser(t, s, "down@example.org")
	logRows(t, s, u.ID, 3)
	storetest.Erase(t, s, u)
	current, _, err := s.Migrator().Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrator().Down(ctx, int(current-30)); err != nil {
		t.Fatal(err)
	}
	if n := clientRows(t, s, u.ID); n != 0 {
		t.Errorf("%d rows of a pending erasure hold a client after migrating down", n)
	}
}
