package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/authd/authd/internal/owner"
	"github.com/authd/authd/migrate"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// commandLockWait is how long a migration command waits for another's
// command lock, as goose's PostgreSQL session locker does (60 tries 5 s
// apart): a migration that rebuilds tables may take minutes.
const commandLockWait = 5 * time.Minute

// commandLock serialises the migration commands of every process on the
// database at path, whose URI filename is uri (authd migrate, and the
// commands and starts that migrate the default database): goose takes no
// lock on SQLite, and two commands at once each read the applied versions
// and applied what the other was applying; a table rebuild run again after
// later migrations undid them, and the version table said head. SQLite has
// no advisory locks: the lock is an exclusive transaction on an empty
// database beside this one (its file name and "-migrate-lock"), which
// every process sees, which waits with SQLite's busy handler, and which
// ends with its connection whatever happens. The file stays: removed under
// a waiting process, a third would lock a new one beside it.
func commandLock(path, uri string) *migrate.CommandLock {
	// mode=rw: SQLite never makes the file (makeLockFile did), so a link
	// planted there after makeLockFile looked cannot have root make one.
	dsn := uri + "-migrate-lock" + fmt.Sprintf("?mode=rw&_pragma=busy_timeout(%d)", commandLockWait.Milliseconds())
	return &migrate.CommandLock{Locker: exclusiveLocker{}, Open: func() (*sql.DB, error) {
		if err := makeLockFile(path); err != nil {
			return nil, err
		}
		return sql.Open("sqlite", dsn)
	}}
}

// makeLockFile makes the lock file of the database at path, if it is not
// there, 0600 and owned as the database is (owner.Match: one `sudo authd
// migrate up` must not leave a file the serve's user cannot write, whose
// lock, taken read-only, would lock no one). Only a file this call made is
// given away: one already there, perhaps a link its directory's owner
// planted to a file of root's, is taken as it is (and refused by the
// lock's write if it cannot be written).
func makeLockFile(path string) error {
	info, err := os.Stat(path) // the database's owner (through a link, as SQLite opens it)
	if err != nil {
		return err
	}
	lock := path + "-migrate-lock"
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Made before, by authd: a file, never a link (which SQLite, opening
		// it by name, would follow, as root too).
		if info, err := os.Lstat(lock); err != nil || !info.Mode().IsRegular() {
			return fmt.Errorf("the migration lock file %s is not a plain file (a link?): remove it", lock)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("the migration lock file beside the database: %w", err)
	}
	err = owner.Match(f, info)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(lock) // not left root's for good: the next command makes it again
	}
	return err
}

// exclusiveLocker holds an exclusive transaction on the lock database,
// one that has written: SQLite opens a file it cannot write read-only, and
// a read-only connection's BEGIN EXCLUSIVE excludes no one.
type exclusiveLocker struct{}

func (exclusiveLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		var e *sqlite.Error
		if errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY || ctx.Err() != nil {
			return err // another command holds it (migrate.ErrCommandLock), or the wait was given up
		}
		return fmt.Errorf("the migration lock file beside the database: %w", err) // not a wait: the file's fault
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA user_version = 1"); err != nil { // rolled back with the lock
		conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK") //nolint:errcheck // the connection closes next
		return fmt.Errorf("the migration lock file beside the database cannot be written: %w", err)
	}
	return nil
}

func (exclusiveLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, "ROLLBACK")
	return err
}
