package migrate_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/authd/authd"
	"github.com/authd/authd/migrate"
	"github.com/authd/authd/storetest"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite"
)

// locker is a CommandLock's locker whose SessionLock runs lock on the
// connection it is given.
type locker struct {
	lock func(ctx context.Context, conn *sql.Conn) error
}

func (l locker) SessionLock(ctx context.Context, conn *sql.Conn) error { return l.lock(ctx, conn) }
func (locker) SessionUnlock(context.Context, *sql.Conn) error          { return nil }

// migrator is a Migrator of one migration on a fresh SQLite database, its
// command lock on PostgreSQL taken by lock.
func migrator(t *testing.T, lock func(ctx context.Context, conn *sql.Conn) error) *migrate.Migrator {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	fsys := fstest.MapFS{"00001_one.sql": {Data: []byte("-- +goose Up\nCREATE TABLE one (id INTEGER);\n-- +goose Down\nDROP TABLE one;\n")}}
	lockURL := storetest.PostgresURL(t)
	m, err := migrate.New(goose.DialectSQLite3, db, fsys, &migrate.CommandLock{Locker: locker{lock},
		Open: func() (*sql.DB, error) { return sql.Open("pgx", lockURL) }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLostCommandLockIsTold: a command whose lock's session ended while it
// ran (idle_session_timeout, a dropped connection) says so: another
// command may have come between its steps.
func TestLostCommandLockIsTold(t *testing.T) {
	t.Parallel()
	m := migrator(t, func(ctx context.Context, conn *sql.Conn) error {
		conn.ExecContext(ctx, "SELECT pg_terminate_backend(pg_backend_pid())") // the session ends here
		return nil
	})
	res, err := m.Up(context.Background())
	if len(res) != 1 || err == nil || !strings.Contains(err.Error(), "lock was lost") {
		t.Errorf("up with its lock's session ended: %v %v, want the migration applied and the loss told", res, err)
	}
}

// TestCommandLockErrorsTellTheirCause: only a lock another command held
// until the locker gave up is ErrCommandLock (whose hint sends the operator
// to look for that command); a failed lock query is told as itself.
func TestCommandLockErrorsTellTheirCause(t *testing.T) {
	t.Parallel()
	held := migrator(t, func(context.Context, *sql.Conn) error { return errors.New("failed to acquire lock") })
	if _, err := held.Up(context.Background()); !errors.Is(err, migrate.ErrCommandLock) {
		t.Errorf("up while another command holds the lock: %v, want ErrCommandLock", err)
	}
	broken := migrator(t, func(context.Context, *sql.Conn) error {
		return fmt.Errorf("failed to execute: %w", io.ErrUnexpectedEOF)
	})
	if _, err := broken.Up(context.Background()); errors.Is(err, migrate.ErrCommandLock) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("up whose lock query failed: %v, want that failure, not ErrCommandLock", err)
	}
}

// TestNewerDatabaseIsLeftAlone: up, down and redo on a database a later
// authd migrated refuse, naming both versions, and change nothing: up is
// not "already at head", down not goose's "version not found".
func TestNewerDatabaseIsLeftAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	fsys := fstest.MapFS{"00001_one.sql": {Data: []byte("-- +goose Up\nCREATE TABLE one (id INTEGER);\n-- +goose Down\nDROP TABLE one;\n")}}
	m, err := migrate.New(goose.DialectSQLite3, db, fsys, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	// A later release's migration 2.
	if _, err := db.ExecContext(ctx, `CREATE TABLE two (id INTEGER);
		INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, 1)`); err != nil {
		t.Fatal(err)
	}
	const want = "database schema is at version 2, newer than this authd knows (1)"
	for name, run := range map[string]func() ([]migrate.Result, error){
		"up":   func() ([]migrate.Result, error) { return m.Up(ctx) },
		"down": func() ([]migrate.Result, error) { return m.Down(ctx, 1) },
		"redo": func() ([]migrate.Result, error) { return m.Redo(ctx) },
	} {
		rs, err := run()
		if authd.ErrorMessage(err) != want || len(rs) != 0 {
			t.Errorf("%s: %v, %v; want %q and nothing done", name, rs, err, want)
		}
	}
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name IN ('one', 'two')`).Scan(&tables); err != nil || tables != 2 {
		t.Errorf("%d of the two tables left (%v)", tables, err)
	}
}
