// Package sqlite implements authd.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go), the zero-set-up default, with its schema
// migrations embedded.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/migrate"
	"github.com/pressly/goose/v3"
	"golang.org/x/text/unicode/norm"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationsDir is where `authd migrate create` writes new migrations,
// relative to the repository root.
const MigrationsDir = "sqlite/migrations"

// authd_nfc(text) is Unicode NFC, which SQLite lacks (PostgreSQL's
// normalize): migration 12 composes the stored addresses with it.
func init() {
	err := sqlite.RegisterDeterministicScalarFunction("authd_nfc", 1,
		func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			switch v := args[0].(type) {
			case string:
				return norm.NFC.String(v), nil
			case []byte:
				return norm.NFC.Bytes(v), nil
			default: // NULL, numbers: as they are
				return v, nil
			}
		})
	if err != nil {
		panic(err) // only a second registration of the name fails
	}
}

// Store is an authd.Store on one SQLite database file.
//
// SQLite has one writer at a time. Left to SQLite, writers that find the
// lock taken sleep in its busy handler and poll (1 ms, then longer, up to
// 100 ms between tries), so under load a write waits for a lucky wake-up
// rather than its turn: long tails. The store queues its own writers
// instead (lane): a write transaction or statement waits in Go, in order,
// and takes the lock when the previous writer lets go, so the busy handler
// fires only for other processes (the admin CLI, a second server) sharing
// the file. Reads do not queue: in WAL mode they never wait for the writer.
type Store struct {
	queries
	db       *sql.DB
	lane     lane
	stmts    *stmts
	migrator *migrate.Migrator
	file     *dbFile

	stopCheckpoints context.CancelFunc // by Close: a checkpoint in progress, or waiting for the lane, ends
	checkpointsDone chan struct{}      // closed by checkpoints as it returns
}

// dbFile is the database file a store opened, to tell when it was moved,
// replaced or removed under the server.
type dbFile struct {
	path   string
	opened os.FileInfo
}

// check returns an outage when the file at the path is no longer the one
// opened. Its connections would go on writing into the old file, moved or
// unlinked (a backup restored under the server lost every write after
// it, a probe found), and its -wal, the old file's, corrupted the restored
// file at the next open.
func (f *dbFile) check() error {
	if f == nil {
		return nil
	}
	if fi, err := os.Stat(f.path); err == nil && os.SameFile(fi, f.opened) {
		return nil
	}
	return unusable(fmt.Errorf("the SQLite database file %s was moved, replaced or removed while authd ran", f.path))
}

var _ authd.Store = (*Store)(nil)

// maxIdleConns is how many idle connections the store keeps for reads.
const maxIdleConns = 64

// uriPath escapes what a URI filename's path would read otherwise.
var uriPath = strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23")

// busyTimeout is how long SQLite lets a writer wait for another process's
// write lock (a variable for the lane's test).
var busyTimeout = 10 * time.Second

// busyHint tells the operator whose lock a writer waited for in vain (%s:
// busyTimeout).
const busyHint = "another process holds the SQLite database's write lock longer than its busy_timeout (%s): " +
	"an authd command, a second authd serve on the same file, or a sqlite3 shell or backup with a transaction open; " +
	"let it finish or stop it (several instances need PostgreSQL)"

// Open opens (creating when missing) the database file at path and its
// directory. It does not migrate; call Migrator().Up.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, &authd.Error{Code: authd.EInvalid, Message: "the SQLite database path is empty",
			Hint: "use sqlite://PATH, for example sqlite://./authd-data/authd.db"}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, &authd.Error{Code: authd.EUnavailable, Err: err,
			Message: fmt.Sprintf("cannot create the directory of the SQLite database %s", path),
			Hint:    "check that the directory is writable or set DATABASE_URL"}
	}
	// WAL lets readers run beside the one writer; IMMEDIATE transactions take
	// the write lock at BEGIN, which serialises read-modify-write flows the
	// way row locks do on PostgreSQL and avoids upgrade deadlocks.
	//
	// The path goes into a URI filename, where SQLite decodes %HH and ends
	// the path at ? or #: escaped, a directory named d%41b (or a?b) is that
	// directory, not dAb (or a). An absolute (Unix) path follows an empty
	// authority (file:///abs): after a bare "file:", a path that begins
	// with two slashes (sqlite:////abs, SQLAlchemy's way) would be read
	// as an authority. A relative one stays relative (file:rel).
	uri := "file:" + uriPath.Replace(path)
	if filepath.IsAbs(path) {
		uri = "file://" + uriPath.Replace(path)
	}
	//
	// Only Open creates the file (its owner's alone); the pool's
	// connections open it read-write and never create it (mode=rw): one
	// opened after the file was deleted under the server fails (CANTOPEN,
	// an outage with its hint) instead of making an empty, world-readable
	// database at the path, whose missing tables answered 500s (a probe).
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, &authd.Error{Code: authd.EUnavailable, Err: err,
				Message: fmt.Sprintf("cannot create the SQLite database %s", path),
				Hint:    "check that the directory is writable or set DATABASE_URL"}
		}
		if f != nil {
			f.Close()
		}
	}
	// No connection checkpoints the WAL as it commits (wal_autocheckpoint
	// off): the store's checkpointer does, beside the writers (checkpoint.go).
	dsn := uri + "?mode=rw&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)" +
		fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) +
		fmt.Sprintf("&_pragma=synchronous(NORMAL)&_pragma=wal_autocheckpoint(0)&_pragma=journal_size_limit(%d)", walSizeLimit) +
		"&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	// database/sql keeps two idle connections by default: under concurrent
	// reads it would open and close SQLite connections (file open, pragmas,
	// WAL index mapping) per request. Keep enough for the request
	// concurrency; idle ones close after a while.
	db.SetMaxIdleConns(maxIdleConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if ctx.Err() != nil { // ended while it opened (the driver's error need not say so): not the file's fault
			return nil, translate(ctx.Err())
		}
		hint := StorageHint(err)
		if hint == "" {
			hint = "check that the file is a SQLite database and writable, or set DATABASE_URL"
		}
		return nil, &authd.Error{Code: authd.EUnavailable, Err: err,
			Message: fmt.Sprintf("cannot open the SQLite database %s", path), Hint: hint}
	}
	// The file holds password hashes: keep it to its owner.
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	opened, err := os.Stat(path)
	if err != nil {
		db.Close()
		return nil, err
	}
	file := &dbFile{path: path, opened: opened}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		db.Close()
		return nil, err
	}
	m, err := migrate.New(goose.DialectSQLite3, db, sub, commandLock(path, uri))
	if err != nil {
		db.Close()
		return nil, err
	}
	l, st := make(lane, 1), &stmts{db: db}
	checkpointing, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	s := &Store{queries: queries{db: laneDB{db: db, lane: l, stmts: st, file: file}}, db: db, lane: l, stmts: st,
		migrator: m, file: file, stopCheckpoints: stop, checkpointsDone: done}
	go s.checkpoints(checkpointing, checkpointEvery, done)
	return s, nil
}

// Migrator returns the store's schema migrator.
func (s *Store) Migrator() *migrate.Migrator { return s.migrator }

// DB returns the underlying database handle, for tests.
func (s *Store) DB() *sql.DB { return s.db }

// InTx implements authd.Store.
func (s *Store) InTx(ctx context.Context, fn func(authd.Queries) error) (err error) {
	if err := s.lane.enter(ctx); err != nil {
		return err
	}
	defer s.lane.leave()
	defer func() { dropReadOnly(s.db, err) }() // once the rollback below has given the connection back
	if err := s.file.check(); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return translate(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after commit
	if err := fn(&queries{db: txDB{tx: tx, c: s.stmts}}); err != nil {
		return err
	}
	err = tx.Commit()
	if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
		// database/sql rolled the transaction back as ctx ended, before
		// the commit (its own goroutine: a race with it).
		err = ctx.Err()
	}
	return translate(err)
}

// Ready implements authd.Store.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.file.check(); err != nil {
		return err
	}
	if err := s.db.PingContext(ctx); err != nil {
		return translate(err)
	}
	return s.migrator.CheckHead(ctx)
}

// Close implements authd.Store.
func (s *Store) Close() error {
	s.stopCheckpoints()
	<-s.checkpointsDone
	s.stmts.close()
	err := s.db.Close()
	if s.file.check() != nil {
		// The -wal and -shm at the path are the old file's (SQLite does
		// not checkpoint a database moved while open): beside a file
		// restored there, the next open would replay them into it.
		// Moved aside, not deleted.
		for _, suffix := range []string{"-wal", "-shm"} {
			os.Rename(s.file.path+suffix, s.file.path+suffix+".stale") //nolint:errcheck // none left is fine
		}
	}
	return err
}

// translate turns driver errors into domain errors where they meet the
// database; anything unexpected stays an internal error with its cause.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return authd.WrapError(authd.ENotFound, err, "not found")
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The request ended (its client left, its time ran out) while it
		// waited for or used the database: nothing of it was committed.
		return &authd.Error{Code: authd.EUnavailable, Message: "the database did not answer in time",
			RetryAfter: time.Second, Err: err}
	}
	var e *sqlite.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return authd.WrapError(authd.EConflict, err, "already exists")
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return authd.WrapError(authd.ENotFound, err, "a referenced record does not exist")
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return authd.WrapError(authd.EInvalid, err, "invalid value")
		}
		switch e.Code() & 0xff { // primary result code
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			busy := &authd.Error{Code: authd.EUnavailable, Message: "the database is busy", RetryAfter: time.Second, Err: err}
			if e.Code()&0xff == sqlite3.SQLITE_BUSY {
				// The lane queues this process's writers, so another
				// process holds the write lock, and has for busyTimeout.
				busy.Hint = fmt.Sprintf(busyHint, busyTimeout)
			}
			return busy
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			// The file was removed, replaced or damaged under the server
			// (a probe: 500s and answers from a deleted file): an outage
			// the operator must mend, told as one.
			return unusable(err)
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY:
			// The file system, not the request: a disk full, failing or
			// mounted read-only, a file whose owner or mode changed. A
			// statement's failed write is rolled back, and in WAL mode a
			// commit counts once its last frame is whole, so these mean
			// nothing was committed, but for an IOERR at commit itself
			// (the file system may have kept what it said it could not):
			// uncertain there, as a PostgreSQL connection lost at COMMIT.
			// Once the operator mends it, the same request succeeds,
			// without a restart.
			return &authd.Error{Code: authd.EUnavailable, Message: "the database cannot be written",
				RetryAfter: time.Second, Err: err, Hint: storageHints[e.Code()&0xff]}
		}
	}
	return fmt.Errorf("sqlite: %w", err)
}

// dropReadOnly closes db's idle connections when err is SQLite refusing a
// write as read-only. A connection SQLite opened while the file (or its
// -wal or -shm) was write-protected stays read-only for its life, and
// database/sql hands the next writer an idle one: every write failed on
// after the mode was mended, until a restart (a probe). One in use when
// this runs is closed by a later failure, once it is back.
func dropReadOnly(db *sql.DB, err error) {
	var e *sqlite.Error
	if errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_READONLY {
		db.SetMaxIdleConns(0)
		db.SetMaxIdleConns(maxIdleConns)
	}
}

// StorageHint says what to mend when err is the file system failing the
// database (full, failing, read-only), and "" otherwise: for the errors
// that do not pass through the store's queries (a migration's).
func StorageHint(err error) string {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return storageHints[e.Code()&0xff]
	}
	return ""
}

// storageHints tell the operator what to mend when the file system fails
// the SQLite database.
var storageHints = map[int]string{
	sqlite3.SQLITE_FULL: "the file system holding the SQLite database is full: free space on it " +
		"(authd answers again at once)",
	sqlite3.SQLITE_IOERR: "the SQLite database could not be read or written: check the file system " +
		"holding it (kernel log, free space, a mount gone read-only)",
	sqlite3.SQLITE_READONLY: "the SQLite database cannot be written: the database file, its -wal and -shm " +
		"files and their directory must be writable by the user authd runs as, on a file system mounted read-write",
	sqlite3.SQLITE_CANTOPEN: replacedHint,
	sqlite3.SQLITE_NOTADB:   replacedHint,
	sqlite3.SQLITE_CORRUPT:  replacedHint,
}

// unusable is the outage of a database file that cannot be used (err):
// removed, replaced or damaged under the server.
func unusable(err error) *authd.Error {
	return &authd.Error{Code: authd.EUnavailable, Message: "the database cannot be used", RetryAfter: time.Second,
		Err: err, Hint: replacedHint}
}

// replacedHint is what to do about a SQLite database file that cannot be
// opened, is not one, or is damaged: most often moved, deleted or replaced
// under a running server.
const replacedHint = "the SQLite database file cannot be opened or is damaged (moved, deleted or replaced " +
	"while authd ran?): stop authd, put the database back (a backup restored without the old -wal and -shm " +
	"files), then start it"
