package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/authd/authd/migrate"
)

// commandLockWait is how long a migration command waits for another's
// command lock, as goose's PostgreSQL session locker does (60 tries 5 s
// apart): a migration that rebuilds tables may take minutes.
const commandLockWait = 5 * time.Minute

// commandLock serialises the migration commands of every process on the
// database whose URI filename is uri (authd migrate, seed, a serve that
// migrates its default database): goose takes no lock on SQLite, and two
// commands at once each read the applied versions and applied what the
// other was applying; a table rebuild run again after later migrations
// undid them, and the version table said head. SQLite has no advisory
// locks: the lock is an exclusive transaction on an empty database beside
// this one (its file name and "-migrate-lock"), which every process sees,
// which waits with SQLite's busy handler, and which ends with its
// connection whatever happens. The file stays: removed under a waiting
// process, a third would lock a new one beside it.
func commandLock(uri string) *migrate.CommandLock {
	dsn := uri + "-migrate-lock" + fmt.Sprintf("?_pragma=busy_timeout(%d)", commandLockWait.Milliseconds())
	return &migrate.CommandLock{Locker: exclusiveLocker{}, Open: func() (*sql.DB, error) {
		return sql.Open("sqlite", dsn)
	}}
}

// exclusiveLocker holds an exclusive transaction on the lock database.
type exclusiveLocker struct{}

func (exclusiveLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE")
	return err
}

func (exclusiveLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, "ROLLBACK")
	return err
}
