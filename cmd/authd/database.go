package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/migrate"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/sqlite"
)

// database is a store with its migrations.
type database interface {
	authd.Store
	Migrator() *migrate.Migrator
}

// schema is what a command asks of the database it opens.
type schema int

const (
	atHead     schema = iota // at head, or refused; the default SQLite database is brought there
	existing                 // atHead, but a missing default SQLite database is refused, not created
	anyVersion               // as it is: migrate's reads and roll-backs
	creating                 // as it is, a missing SQLite file created: migrate up
)

// openDatabase opens the store DATABASE_URL names. Only the default SQLite
// database (DATABASE_URL unset, see Config.DefaultDatabase) is created and
// migrated by itself, so that `authd serve` works in an empty directory.
// Any other database must exist, and for atHead be at head; the error
// otherwise names the command that fixes it. An operator's SQLite path is
// never created by accident (a typo would otherwise get an empty database),
// nor are its directories.
// A command tells on stderr (a nil stderr: not at all) that it created or
// migrated the default database.
func openDatabase(ctx context.Context, cfg *Config, want schema, stderr io.Writer) (database, error) {
	return open(ctx, cfg, want, func(msg string) {
		if stderr != nil {
			fmt.Fprintln(stderr, msg)
		}
	}, postgres.WithLockTimeout(commandLockWait))
}

// commandLockWait bounds how long a command waits for a PostgreSQL lock
// another session holds: a transaction left open elsewhere fails it with a
// hint instead of hanging it, and a migration gives up rather than queue
// every request behind its table lock. A lock_timeout the connection has
// of its own (DATABASE_URL, ALTER ROLE … SET) wins.
const commandLockWait = 15 * time.Second

// serveLockWait is commandLockWait for serve's requests, many of which
// finish whatever their client does (a login's checks): one stuck behind a
// transaction left open answers 503 with Retry-After after this long,
// as a wait in SQLite's writer lane does, rather than hang.
const serveLockWait = 10 * time.Second

// openServing is openDatabase for serve, which logs what it did to the
// default database.
func openServing(ctx context.Context, cfg *Config, logger *slog.Logger) (database, error) {
	return open(ctx, cfg, atHead, func(msg string) { logger.Info(msg) }, postgres.WithLockTimeout(serveLockWait))
}

// open opens the database; told hears what became of the default SQLite
// database when it was created or migrated (migratedDefault).
func open(ctx context.Context, cfg *Config, want schema, told func(string), opts ...postgres.Option) (database, error) {
	var db database
	if path, ok := strings.CutPrefix(cfg.DatabaseURL, "sqlite://"); ok {
		def := cfg.DefaultDatabase
		if def {
			if err := checkLeftBehind(path); err != nil {
				return nil, err
			}
			if _, err := os.Stat(path); want == existing && errors.Is(err, os.ErrNotExist) {
				// A command with something to act on, run where no server ran:
				// an empty new database would answer "no such user".
				return nil, &cliError{msg: fmt.Sprintf("no database at %s (DATABASE_URL unset: $AUTHD_DATA_DIR/authd.db)", path),
					hint: "run it with the AUTHD_DATA_DIR or DATABASE_URL that `authd serve` uses"}
			}
		} else if err := checkSQLitePath(path, want == creating); err != nil {
			return nil, err
		}
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		if def && (want == atHead || want == existing) {
			s.Migrator().OnLockWait(func() {
				told("waiting for another authd to finish migrating the database (it holds the migration command lock)")
			})
			results, err := s.Migrator().Up(ctx)
			if err != nil {
				s.Close()
				msg := err.Error()
				if de, ok := err.(*authd.Error); ok && de.Err == nil {
					msg = de.Message // a refusal of the migrator's own, without "unavailable: "
				}
				return nil, &cliError{msg: "migrating the SQLite database: " + msg, hint: migrationHint(err), err: err}
			}
			if len(results) > 0 {
				told(migratedDefault(path, results))
			}
		}
		db = s
	} else {
		s, err := postgres.Open(ctx, cfg.DatabaseURL, opts...)
		if err != nil {
			return nil, err
		}
		db = s
	}
	if want == atHead || want == existing {
		if err := db.Migrator().CheckHead(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// migrationHint tells what to do when the default database's migration at
// a command's start failed: restoring a backup only when a migration itself
// failed on the file.
func migrationHint(err error) string {
	var de *authd.Error
	storage := sqlite.StorageHint(err)
	switch {
	case storage != "":
		// Not the file's fault: a failed migration is rolled back and not
		// recorded, and the next start applies it.
		return storage + "; then start again: the migrations not applied are applied then"
	case errors.As(err, &de) && de.Hint != "": // a database a later authd migrated
		return de.Hint
	case errors.Is(err, migrate.ErrCommandLock):
		return "another authd (a migrate, a start, a seed) was migrating the database all the while: let it finish, then start again"
	case errors.As(err, new(*migrate.FailedError)):
		return "restore the database file from a backup or point DATABASE_URL at a new one"
	}
	return "check the database file and its directory (writable by this user, the -migrate-lock file beside it too), then start again"
}

// migratedDefault says what the migrations results did to the default
// database at path: an operator upgrading authd should see the schema move
// (no `authd migrate up` is asked of this database), and a first start
// where its database now is.
func migratedDefault(path string, results []migrate.Result) string {
	from, to := results[0].Version-1, results[len(results)-1].Version
	if from == 0 {
		return fmt.Sprintf("created the SQLite database %s (DATABASE_URL unset: $AUTHD_DATA_DIR/authd.db) at schema version %d", path, to)
	}
	return fmt.Sprintf("migrated the SQLite database %s (DATABASE_URL unset: $AUTHD_DATA_DIR/authd.db) from schema version %d to %d", path, from, to)
}

// checkSQLitePath refuses a SQLite database an operator named that does not
// exist, unless create; even then its directory must exist.
func checkSQLitePath(path string, create bool) error {
	info, err := os.Stat(path)
	switch {
	case err == nil && !info.Mode().IsRegular():
		// /dev/null, a directory: SQLite would call it a disk I/O error.
		return &cliError{msg: fmt.Sprintf("%s (DATABASE_URL) is not a file: a SQLite database is a regular file", path),
			hint: "check DATABASE_URL"}
	case !errors.Is(err, os.ErrNotExist):
		return nil // there, or a problem sqlite.Open reports
	case !create:
		return &cliError{msg: fmt.Sprintf("no SQLite database at %s (DATABASE_URL)", path),
			hint: "check DATABASE_URL, or create the database with `authd migrate up`"}
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return &cliError{msg: fmt.Sprintf("no directory %s for the SQLite database %s (DATABASE_URL)", dir, path),
			hint: "check DATABASE_URL, or create the directory first"}
	}
	return nil
}

// leftBehind is where the default database was before it followed
// AUTHD_DATA_DIR: DATABASE_URL's default was ./authd-data/authd.db whatever
// the data directory.
var leftBehind = filepath.Join("authd-data", "authd.db")

// checkLeftBehind refuses to start a new default database at path while the
// one an earlier authd used with the same settings, ./authd-data/authd.db,
// is there: its accounts would seem gone.
func checkLeftBehind(path string) error {
	if filepath.Clean(path) == leftBehind {
		return nil
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(leftBehind); err != nil {
		return nil
	}
	return &cliError{msg: fmt.Sprintf("no SQLite database at %s (DATABASE_URL unset: $AUTHD_DATA_DIR/authd.db), but there is one at ./%s, where earlier versions kept it whatever AUTHD_DATA_DIR said", path, leftBehind),
		hint: fmt.Sprintf("move ./%s to %s, or set DATABASE_URL=sqlite://./%s (then run `authd migrate up` after each upgrade); "+
			"for a new database at %s instead, set DATABASE_URL=sqlite://%s and run `authd migrate up`", leftBehind, path, leftBehind, path, path)}
}

// openConfigured loads the configuration (flags over environment over .env)
// and opens its database, at head (want: atHead, or existing).
func openConfigured(ctx context.Context, e *env, flags map[string]*configFlag, want schema) (*Config, database, error) {
	cfg, err := loadConfig(flags, e.getenv)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDatabase(ctx, cfg, want, e.stderr)
	return cfg, db, err
}
