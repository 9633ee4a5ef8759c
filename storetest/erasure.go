package storetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// ErasureStore is a store under the erasure tests, with what they need of
// it beyond authd.Store: its security-log and erasures_pending rows
// written and counted directly, and faults. The Refuse methods' faults
// fail the statement with an error that says "disk I/O error".
type ErasureStore interface {
	authd.Store
	// LogRows inserts n security-log rows about user, at (or seconds
	// after) at, in one statement, each holding a client (IP, user agent,
	// device_info) and a session_id.
	LogRows(t testing.TB, user uuid.UUID, n int, at time.Time)
	// ClientRows counts the user's security-log rows that still hold a
	// client.
	ClientRows(t testing.TB, user uuid.UUID) int
	// SessionRows counts the user's security-log rows whose context keeps
	// its session_id.
	SessionRows(t testing.TB, user uuid.UUID) int
	// PendingErasures counts the user's erasures_pending rows.
	PendingErasures(t testing.TB, user uuid.UUID) int
	// CutErasureShort runs FinishErasure for user, whose erasure is
	// pending with rows security-log rows holding a client, and ends its
	// context part way, as a crash, a stop or its time budget would. It
	// fails t unless FinishErasure fails and leaves the rows as the store
	// promises of one cut short.
	CutErasureShort(t testing.TB, user uuid.UUID, rows int)
	// RefuseClearing makes every write to the security-log rows of user
	// fail: FinishErasure then fails for user.
	RefuseClearing(t testing.TB, user uuid.UUID)
	// RefuseDeletingLogs makes every delete of a security-log row fail.
	RefuseDeletingLogs(t testing.TB)
	// RefuseFinishing makes the delete of the erasures_pending row of
	// user fail, but not one a deleted account cascades to, until lift.
	RefuseFinishing(t testing.TB, user uuid.UUID) (lift func())
	// Exec runs query, a statement of no arguments that both dialects
	// accept.
	Exec(t testing.TB, query string)
}

// Erasures runs the tests of erasures pending and of retention finishing
// them. open returns a new, migrated, empty store for each.
func Erasures(t *testing.T, open func(t *testing.T) ErasureStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s ErasureStore)
	}{
		{"ClearsLogsAfterItsTransaction", testErasureClearsLogsAfterItsTransaction},
		{"RetentionFinishesErasures", testRetentionFinishesErasures},
		{"RetentionPastAFailingErasure", testRetentionPastAFailingErasure},
		{"RetentionFinishesErasuresPastTheOldRows", testRetentionFinishesErasuresPastTheOldRows},
		{"RetentionFinishesErasuresPastAFailingStep", testRetentionFinishesErasuresPastAFailingStep},
		{"RetentionFinishesErasuresPastAFailingHeadRead", testRetentionFinishesErasuresPastAFailingHeadRead},
		{"RetentionKeepsAPendingErasuresAccount", testRetentionKeepsAPendingErasuresAccount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// retention is the purge request of a 90-day retention of the logs at
// Epoch.
func retention() authd.PurgeRequest {
	return authd.PurgeRequest{LogsBefore: Epoch.Add(-90 * 24 * time.Hour), ExpiredBefore: Epoch.Add(-24 * time.Hour), Now: Epoch}
}

// testErasureClearsLogsAfterItsTransaction: an erasure's transaction
// names the account in erasures_pending and leaves its security-log rows
// to FinishErasure, after the commit: on PostgreSQL one statement that
// took 28 s for an account of 1.5 million rows outlived clients'
// timeouts, and the erasure rolled back with the request; on SQLite one
// UPDATE of them all held every writer. FinishErasure clears the client
// from every row of the account (the rest of the row kept) and of no
// other; a row logged since the erasure keeps no client.
func testErasureClearsLogsAfterItsTransaction(t *testing.T, s ErasureStore) {
	ctx := context.Background()
	u, other := mustCreateUser(t, s, "erased@example.org"), mustCreateUser(t, s, "kept@example.org")
	const rows = 1000
	s.LogRows(t, u.ID, rows, Epoch)
	s.LogRows(t, other.ID, 10, Epoch)

	Erase(t, s, u)
	if n := s.ClientRows(t, u.ID); n != rows {
		t.Fatalf("the transaction cleared %d of %d rows; want them left to FinishErasure", rows-n, rows)
	}
	if s.PendingErasures(t, u.ID) != 1 {
		t.Fatal("the transaction did not record the erasure as pending")
	}
	// A row logged since keeps no client.
	if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(Epoch, authd.EventLoginFailure, authd.ResultFailure,
		u.ID, "192.0.2.8", "curl/8", "no account", map[string]any{"device_info": "laptop"})); err != nil {
		t.Fatal(err)
	}
	if n := s.ClientRows(t, u.ID); n != rows {
		t.Fatalf("%d rows hold a client after one logged since the erasure; want %d", n, rows)
	}

	if err := s.FinishErasure(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if n := s.ClientRows(t, u.ID); n != 0 {
		t.Errorf("%d rows of the erased account still hold a client", n)
	}
	if n := s.ClientRows(t, other.ID); n != 10 {
		t.Errorf("another account's rows holding a client: %d, want 10", n)
	}
	if n := s.SessionRows(t, u.ID); n != rows {
		t.Errorf("rows keeping the rest of their context: %d; want %d", n, rows)
	}
	if s.PendingErasures(t, u.ID) != 0 {
		t.Error("the finished erasure is still pending")
	}
	// Again: nothing left to do.
	if err := s.FinishErasure(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
}

// testRetentionFinishesErasures: an erasure whose clearing was cut short
// (a crash, a stop, its time budget) stays pending, and is finished by the
// next purge, and not by a dry run, which writes nothing.
func testRetentionFinishesErasures(t *testing.T, s ErasureStore) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "cut-short@example.org")
	const rows = 1000
	s.LogRows(t, u.ID, rows, Epoch)
	Erase(t, s, u)
	s.CutErasureShort(t, u.ID, rows)
	if n, pending := s.ClientRows(t, u.ID), s.PendingErasures(t, u.ID); n == 0 || pending != 1 {
		t.Fatalf("after a clearing cut short: %d rows hold a client, pending %d; want some, 1", n, pending)
	}

	req := retention()
	req.DryRun = true
	if _, err := s.Purge(ctx, req); err != nil {
		t.Fatal(err)
	}
	if s.ClientRows(t, u.ID) == 0 || s.PendingErasures(t, u.ID) != 1 {
		t.Fatal("a dry run finished the erasure")
	}
	req.DryRun = false
	if _, err := s.Purge(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := s.ClientRows(t, u.ID); n != 0 {
		t.Errorf("after the purge %d rows still hold a client", n)
	}
	if s.PendingErasures(t, u.ID) != 0 {
		t.Error("the erasure is still pending after the purge")
	}
}

// testRetentionPastAFailingErasure: an erasure whose clearing keeps
// failing (the disk, a row the statement cannot write) is reported by
// every purge, and stops neither the other erasures nor retention.
func testRetentionPastAFailingErasure(t *testing.T, s ErasureStore) {
	ctx := context.Background()
	stuck, other := mustCreateUser(t, s, "stuck@example.org"), mustCreateUser(t, s, "other@example.org")
	for _, u := range []*authd.User{stuck, other} {
		s.LogRows(t, u.ID, 3, Epoch)
		Erase(t, s, u)
	}
	s.RefuseClearing(t, stuck.ID)
	old := Epoch.Add(-100 * 24 * time.Hour)
	if err := s.CreateSecurityLog(ctx, authd.NewSecurityLog(old, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
		"", "", "", nil)); err != nil {
		t.Fatal(err)
	}
	res, err := s.Purge(ctx, retention())
	if err == nil || !strings.Contains(err.Error(), stuck.ID.String()) {
		t.Errorf("a purge past a failing erasure: %v; want its error, naming the account", err)
	}
	if res.SecurityLogs != 1 {
		t.Errorf("the purge deleted %d old rows past the failing erasure; want 1", res.SecurityLogs)
	}
	if n := s.ClientRows(t, other.ID); n != 0 || s.PendingErasures(t, other.ID) != 0 {
		t.Errorf("another erasure beside the failing one: %d rows hold a client", n)
	}
	if s.PendingErasures(t, stuck.ID) != 1 || s.ClientRows(t, stuck.ID) != 3 {
		t.Error("the failing erasure is no longer pending, or was cleared in part")
	}
}

// erasedLongAgo erases an account of three security-log rows holding a
// client, its erasure left pending, with the account's row and its log
// rows past the retention of retention().
func erasedLongAgo(t *testing.T, s ErasureStore, email string) *authd.User {
	t.Helper()
	old := Epoch.Add(-100 * 24 * time.Hour)
	u := mustCreateUser(t, s, email)
	s.LogRows(t, u.ID, 3, old)
	u.UpdatedAt = old // Erase writes it
	Erase(t, s, u)
	return u
}

// testRetentionFinishesErasuresPastTheOldRows: a purge finishes the
// erasures pending once the rows past retention are gone, so that it
// clears none of those (here every clearing of the account's rows, all
// past retention, fails: the erasure finishes with none to clear), and
// the tombstone goes in the same run.
func testRetentionFinishesErasuresPastTheOldRows(t *testing.T, s ErasureStore) {
	u := erasedLongAgo(t, s, "old-rows@example.org")
	s.RefuseClearing(t, u.ID)
	res, err := s.Purge(context.Background(), retention())
	if err != nil || res.SecurityLogs != 3 || res.ErasedAccounts != 1 {
		t.Errorf("Purge = %+v, %v; want the 3 old rows and the tombstone deleted, no clearing", res, err)
	}
	if s.PendingErasures(t, u.ID) != 0 {
		t.Error("the erasure is still pending")
	}
}

// testRetentionFinishesErasuresPastAFailingStep: a security_logs step
// that fails (here every delete fails; a statement timeout, a disk error)
// still lets the purge finish the erasures pending, and answers both: a
// step failing every run kept them pending for ever.
func testRetentionFinishesErasuresPastAFailingStep(t *testing.T, s ErasureStore) {
	u := erasedLongAgo(t, s, "failing-step@example.org")
	s.RefuseDeletingLogs(t)
	if _, err := s.Purge(context.Background(), retention()); err == nil || !strings.Contains(err.Error(), "disk I/O error") {
		t.Errorf("a purge whose security_logs step fails: %v; want the step's error", err)
	}
	if n, pending := s.ClientRows(t, u.ID), s.PendingErasures(t, u.ID); n != 0 || pending != 0 {
		t.Errorf("after the failing purge %d rows hold a client, %d pending; want the erasure finished", n, pending)
	}
}

// testRetentionFinishesErasuresPastAFailingHeadRead: a purge whose first
// read, the revocation feed's head, fails (here its table is gone) still
// finishes the erasures pending, and fails.
func testRetentionFinishesErasuresPastAFailingHeadRead(t *testing.T, s ErasureStore) {
	u := erasedLongAgo(t, s, "failing-head@example.org")
	s.Exec(t, `ALTER TABLE revocation_events RENAME TO revocation_events_gone`)
	if _, err := s.Purge(context.Background(), retention()); err == nil {
		t.Error("a purge whose head read fails answered no error")
	}
	if n, pending := s.ClientRows(t, u.ID), s.PendingErasures(t, u.ID); n != 0 || pending != 0 {
		t.Errorf("after the failing purge %d rows hold a client, %d pending; want the erasure finished", n, pending)
	}
}

// testRetentionKeepsAPendingErasuresAccount: an erased account's
// tombstone past retention stays while its erasure is pending (deleting
// it would drop the pending row with it, and the purges' errors, which
// name the account, would stop), and goes with the first purge after its
// erasure finishes. The fault: the pending row's delete fails, but not
// one a deleted account cascades to.
func testRetentionKeepsAPendingErasuresAccount(t *testing.T, s ErasureStore) {
	ctx := context.Background()
	u := erasedLongAgo(t, s, "stuck-long@example.org")
	lift := s.RefuseFinishing(t, u.ID)
	res, err := s.Purge(ctx, retention())
	if err == nil || !strings.Contains(err.Error(), u.ID.String()) {
		t.Errorf("a purge past a failing erasure: %v; want its error, naming the account", err)
	}
	if pending := s.PendingErasures(t, u.ID); res.ErasedAccounts != 0 || pending != 1 {
		t.Fatalf("the purge deleted %d tombstones, %d erasures pending; want the failing one's kept and pending",
			res.ErasedAccounts, pending)
	}
	if _, err := s.User(ctx, u.ID); err != nil {
		t.Fatalf("the tombstone of a pending erasure after the purge: %v", err)
	}

	lift()
	if res, err := s.Purge(ctx, retention()); err != nil || res.ErasedAccounts != 1 {
		t.Fatalf("the purge after the erasure finishes = %+v, %v; want its tombstone deleted", res, err)
	}
}
