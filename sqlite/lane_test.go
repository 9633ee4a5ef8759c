package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/storetest"
	"github.com/google/uuid"
)

// TestWritersQueueInTheLane: with SQLite's busy handler off (a writer that
// finds the lock taken fails at once), many concurrent writers — flows'
// transactions and lone statements alike — all succeed: they queue in the
// store's lane, never in SQLite.
func TestWritersQueueInTheLane(t *testing.T) {
	old := busyTimeout
	busyTimeout = 0
	t.Cleanup(func() { busyTimeout = old })
	ctx := context.Background()
	s := openMigrated(t)
	s.db.SetMaxOpenConns(64) // room for every writer to hold a connection at once

	now := time.Now().UTC().Truncate(time.Microsecond)
	var wg sync.WaitGroup
	errs := make(chan error, 192)
	for i := range 64 {
		wg.Go(func() {
			errs <- s.InTx(ctx, func(q authd.Queries) error {
				u := &authd.User{ID: uuid.New(), Email: fmt.Sprintf("w%d@example.org", i), PasswordHash: "x",
					AccountStatus: authd.StatusActive, RegistrationTimestamp: now, LastPasswordChange: now, ConsentTimestamp: now, CreatedAt: now, UpdatedAt: now}
				if err := q.CreateUser(ctx, u); err != nil {
					return err
				}
				time.Sleep(time.Millisecond) // hold the lock a while, as a flow does
				return q.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventRegistration, authd.ResultSuccess, u.ID, "", "", "", nil))
			})
		})
		wg.Go(func() {
			errs <- s.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil, "", "", "", nil))
		})
		wg.Go(func() { // an UPDATE … RETURNING outside a transaction
			_, err := s.RevokeUserSessions(ctx, uuid.New(), uuid.Nil, now)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a writer failed: %v", err)
		}
	}
}

// TestLaneWaitEnds: a writer waiting for the lane gives up when its
// context ends, as database busy (503), not an internal error.
func TestLaneWaitEnds(t *testing.T) {
	l := make(lane, 1)
	if err := l.enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.enter(ctx); authd.ErrorCode(err) != authd.EUnavailable {
		t.Errorf("enter a held lane with an ended context = %v, want %s", err, authd.EUnavailable)
	}
	l.leave()
	if err := l.enter(ctx); err != nil {
		t.Errorf("enter a free lane = %v, want nil", err)
	}
}

// TestLaneWaitShed: a writer that waits laneWait for the lane is shed by
// design (authd.ErrBusy, logged sampled), with Retry-After. Not parallel:
// it shortens laneWait.
func TestLaneWaitShed(t *testing.T) {
	defer func(d time.Duration) { laneWait = d }(laneWait)
	laneWait = 10 * time.Millisecond
	l := make(lane, 1)
	if err := l.enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := l.enter(context.Background())
	if !errors.Is(err, authd.ErrBusy) || authd.ErrorCode(err) != authd.EUnavailable || authd.RetryAfterSeconds(err) < 1 {
		t.Errorf("enter a lane held past laneWait = %v, want the database busy, shed (ErrBusy), with Retry-After", err)
	}
}

// TestReadsReuseConnections: concurrent reads reuse idle connections
// instead of opening a SQLite connection per request and closing it after
// (database/sql keeps two idle ones unless told otherwise).
func TestReadsReuseConnections(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t)
	for range 10 {
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				if _, err := s.User(ctx, uuid.New()); authd.ErrorCode(err) != authd.ENotFound {
					t.Errorf("User = %v", err)
				}
			})
		}
		wg.Wait()
	}
	if closed := s.db.Stats().MaxIdleClosed; closed != 0 {
		t.Errorf("%d connections closed for want of idle room after concurrent reads, want 0", closed)
	}
}

// TestStatementsPreparedOnce: a statement text is compiled once and reused
// (in and out of transactions); past maxStmts texts, statements still run,
// unprepared.
func TestStatementsPreparedOnce(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t)
	for range 3 {
		s.User(ctx, uuid.New())
		s.InTx(ctx, func(q authd.Queries) error { _, err := q.User(ctx, uuid.New()); return err })
	}
	s.stmts.mu.Lock()
	n := len(s.stmts.m)
	s.stmts.mu.Unlock()
	if n != 1 {
		t.Errorf("%d statements prepared for one text run six times, want 1", n)
	}
	for i := range maxStmts + 10 {
		var got int
		if err := s.queries.db.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", i)).Scan(&got); err != nil || got != i {
			t.Fatalf("statement %d: %d, %v", i, got, err)
		}
	}
	if len(s.stmts.m) != maxStmts {
		t.Errorf("%d statements cached, want the bound %d", len(s.stmts.m), maxStmts)
	}
}

// openMigrated opens a store on a new database file, migrated; it closes at
// the end of the test.
func openMigrated(t testing.TB) *Store {
	t.Helper()
	return openMigratedAt(t, filepath.Join(t.TempDir(), "authd.db"))
}

// migratedWithUser is openMigrated with an account of email in it.
func migratedWithUser(t testing.TB, email string) (*Store, *authd.User) {
	t.Helper()
	s := openMigrated(t)
	u := storetest.NewUser(email)
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return s, u
}

// openMigratedAt is openMigrated on the database file at path.
func openMigratedAt(t testing.TB, path string) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrator().Up(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAnotherProcessHoldingTheLock: a write that waited busy_timeout for a
// lock another process (here a second store on the same file, with a lane
// of its own) holds is an outage with Retry-After, and tells the operator
// whose lock it is: a hint, not an internal error.
func TestAnotherProcessHoldingTheLock(t *testing.T) {
	old := busyTimeout
	busyTimeout = 50 * time.Millisecond
	t.Cleanup(func() { busyTimeout = old })
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "authd.db")
	var stores [2]*Store
	for i := range stores {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	if _, err := stores[0].Migrator().Up(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	held, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- stores[0].InTx(ctx, func(q authd.Queries) error {
			if err := q.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil, "", "", "", nil)); err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	err := stores[1].CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil, "", "", "", nil))
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if authd.ErrorCode(err) != authd.EUnavailable || authd.RetryAfterSeconds(err) < 1 || errors.Is(err, authd.ErrBusy) ||
		!strings.Contains(authd.ErrorHint(err), "another process holds") {
		t.Errorf("a write behind another process's lock = %v (hint %q); want the database busy, with Retry-After and a hint, not shed",
			err, authd.ErrorHint(err))
	}
}

// TestStorageFailuresAreOutages: a disk full or a database that cannot be
// written (a read-only mount, a file's owner changed) is an outage with
// Retry-After and a hint naming what to mend, not an internal error; the
// same write succeeds once it is mended.
func TestStorageFailuresAreOutages(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t)
	oneConnection(t, s) // the pragmas below are the one connection's
	now := time.Now().UTC().Truncate(time.Microsecond)
	write := func() error {
		return s.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
			"", strings.Repeat("x", 2000), "", nil))
	}
	for _, tt := range []struct {
		name, fail, mend, hint string
	}{
		// No page past the file's own: as a full disk answers.
		{"disk full", "PRAGMA max_page_count = 1", "PRAGMA max_page_count = 1073741823", "is full"},
		{"read-only", "PRAGMA query_only = 1", "PRAGMA query_only = 0", "cannot be written"},
	} {
		if _, err := s.db.ExecContext(ctx, tt.fail); err != nil {
			t.Fatal(err)
		}
		var err error
		for range 100 { // until the pages the file has are used up
			if err = write(); err != nil {
				break
			}
		}
		var e *authd.Error
		if !errors.As(err, &e) || e.Code != authd.EUnavailable || e.RetryAfter < time.Second || !strings.Contains(e.Hint, tt.hint) {
			t.Errorf("%s: %#v; want unavailable with Retry-After and a hint saying it %s", tt.name, err, tt.hint)
		}
		// What no query of the store translates (a migration) is told too
		// (the pragma again: a read-only connection was dropped).
		if _, err := s.db.ExecContext(ctx, tt.fail); err != nil {
			t.Fatal(err)
		}
		if _, err := s.db.ExecContext(ctx, "CREATE TABLE storage_probe (x TEXT)"); !strings.Contains(StorageHint(err), tt.hint) {
			t.Errorf("%s: StorageHint(%v) = %q; want it to say it %s", tt.name, err, StorageHint(err), tt.hint)
		}
		if _, err := s.db.ExecContext(ctx, tt.mend); err != nil {
			t.Fatal(err)
		}
		if h := StorageHint(errors.New("another")); h != "" {
			t.Errorf("StorageHint of another error: %q", h)
		}
		if err := write(); err != nil {
			t.Errorf("%s mended: %v", tt.name, err)
		}
	}
}

// TestReadOnlyConnectionIsNotKept: a connection SQLite opened while the
// file was write-protected stays read-only for its life (query_only stands
// in for it here: as root, a file's mode protects nothing). Once a write
// fails on it, it is not handed to the next writer: the write succeeds as
// soon as the file may be written again, without a restart. It was kept,
// and every write failed until one (a probe).
func TestReadOnlyConnectionIsNotKept(t *testing.T) {
	// The checkpointer must not take the one connection: a write waiting
	// for it failed unavailable before the read-only one was tried, which
	// was then kept for the next (a CI flake).
	noCheckpoints(t)
	ctx := context.Background()
	s := openMigrated(t)
	oneConnection(t, s) // the one connection, read-only below
	now := time.Now().UTC().Truncate(time.Microsecond)
	write := func() error {
		return s.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
			"", "", "", nil))
	}
	inTx := func() error {
		return s.InTx(ctx, func(q authd.Queries) error {
			return q.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
				"", "", "", nil))
		})
	}
	// Prepared (the store keeps its statements) while the pool has its
	// connection to spare: a transaction holds the only one.
	if err := errors.Join(write(), inTx()); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name  string
		write func() error
	}{{"a statement", write}, {"a transaction", inTx}, {"a statement", write}} {
		name := w.name
		if _, err := s.db.ExecContext(ctx, "PRAGMA query_only = 1"); err != nil {
			t.Fatal(err)
		}
		if err := w.write(); authd.ErrorCode(err) != authd.EUnavailable || !strings.Contains(fmt.Sprint(err), "readonly") {
			t.Fatalf("%s on a read-only connection: %v; want unavailable, the connection read-only", name, err)
		}
		if err := w.write(); err != nil {
			t.Errorf("%s again, the read-only connection kept: %v", name, err)
		}
	}
}

// TestReplacedFileIsAnOutage: a database file replaced under the server by
// something that is not a database (or damaged) is an outage with
// Retry-After and a hint to stop and restore, not an internal error (a
// probe: 500s).
func TestReplacedFileIsAnOutage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "authd.db")
	noCheckpoints(t)
	s := openMigratedAt(t, path)
	s.checkpoint(context.Background()) // the migrations' pages in the file, none left in the WAL to read past the garbage
	s.db.SetMaxIdleConns(0)            // every connection closed: the next one opens the file anew
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 300), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.User(ctx, uuid.New())
	var e *authd.Error
	if !errors.As(err, &e) || e.Code != authd.EUnavailable || e.RetryAfter < time.Second ||
		!strings.Contains(e.Hint, "stop authd, put the database back") {
		t.Errorf("a file that is not a database: %#v; want unavailable with Retry-After and the hint to restore it", err)
	}
}

// TestRestoredUnderTheServer: a backup restored over the database file
// while the store has it open. Writes went on into the old file, lost
// without a word, and at the next open the old file's -wal, left at the
// path, was replayed into the restored one and corrupted it (a probe).
// They are refused as an outage naming what to do, /readyz with them, and
// the store's close moves the old -wal aside (the checkpointer leaves it):
// the restored file opens whole, as it was backed up.
func TestRestoredUnderTheServer(t *testing.T) {
	noCheckpoints(t) // the old file's frames stay in its -wal
	ctx := context.Background()
	dir := t.TempDir()
	path, backup := filepath.Join(dir, "authd.db"), filepath.Join(dir, "backup.db")
	s := openMigratedAt(t, path)
	now := time.Now().UTC().Truncate(time.Microsecond)
	write := func() error {
		return s.CreateSecurityLog(ctx, authd.NewSecurityLog(now, authd.EventLoginFailure, authd.ResultFailure, uuid.Nil,
			"", "", "", nil))
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, "VACUUM INTO ?", backup); err != nil {
		t.Fatal(err)
	}
	for range 20 { // after the backup: in the -wal of the file it replaces
		if err := write(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(backup, path); err != nil {
		t.Fatal(err)
	}
	inTx := func() error {
		return s.InTx(ctx, func(q authd.Queries) error { return nil })
	}
	for name, err := range map[string]error{"a write": write(), "a transaction": inTx(), "readiness": s.Ready(ctx)} {
		var e *authd.Error
		if !errors.As(err, &e) || e.Code != authd.EUnavailable || !strings.Contains(e.Hint, "stop authd, put the database back") {
			t.Errorf("%s after the file was replaced: %v; want unavailable with the hint to stop and restore", name, err)
		}
	}
	// Nor does the checkpointer, on a connection it would open anew, copy
	// the old file's -wal into the restored one: in its passes, or in the
	// lane, where it may have waited while the file was replaced.
	s.db.SetMaxIdleConns(0)
	if s.checkpointPasses(ctx) {
		t.Error("the checkpointer would take the lane for a replaced file")
	}
	s.checkpointInLane(ctx)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	restored, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	var check string
	var rows int
	if err := restored.db.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Errorf("the restored file after the store closed: integrity %q, %v", check, err)
	}
	if err := restored.db.QueryRowContext(ctx, "SELECT count(*) FROM security_logs").Scan(&rows); err != nil || rows != 1 {
		t.Errorf("the restored file holds %d audit rows (%v); want the backup's 1", rows, err)
	}
}

// TestDeletedFileIsNotRecreated: a database file deleted under the server
// is an outage with the restore hint, and no connection the pool opens
// afterwards makes an empty database at the path (a probe: world-readable,
// its missing tables answered 500s).
func TestDeletedFileIsNotRecreated(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "authd.db")
	s := openMigratedAt(t, path)
	s.db.SetMaxIdleConns(0) // every connection closed: the next one opens the path anew
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
	_, err := s.User(ctx, uuid.New())
	var e *authd.Error
	if !errors.As(err, &e) || e.Code != authd.EUnavailable || !strings.Contains(e.Hint, "stop authd, put the database back") {
		t.Errorf("a read after the file was deleted: %#v; want unavailable with the hint to restore it", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a database file at the path after it was deleted: %v; want none made", err)
	}
}

// oneConnection bounds s's pool to one connection and waits until only one
// is open. One the checkpointer held meanwhile is over the bound, and the
// pool closes the first of the two given back, which could be the one a
// test then set a pragma on (a flaky run: every write succeeded).
func oneConnection(t *testing.T, s *Store) {
	t.Helper()
	s.db.SetMaxOpenConns(1)
	for deadline := time.Now().Add(5 * time.Second); s.db.Stats().OpenConnections > 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open after a bound of one", s.db.Stats().OpenConnections)
		}
	}
}
