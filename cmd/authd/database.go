package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
	anyVersion               // as it is: migrate's reads and roll-backs
	creating                 // as it is, a missing SQLite file created: migrate up
)

// openDatabase opens the store DATABASE_URL names. Only the default SQLite
// database (see defaultDatabase) is created and migrated by itself, so that
// `authd serve` works in an empty directory. Any other database must exist,
// and for atHead be at head; the error otherwise names the command that
// fixes it. An operator's SQLite path is never created by accident (a typo
// would otherwise get an empty database), nor are its directories.
func openDatabase(ctx context.Context, cfg *Config, want schema) (database, error) {
	var db database
	if path, ok := strings.CutPrefix(cfg.DatabaseURL, "sqlite://"); ok {
		def := cfg.defaultDatabase()
		if !def {
			if err := checkSQLitePath(path, want == creating); err != nil {
				return nil, err
			}
		}
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		if def && want == atHead {
			if _, err := s.Migrator().Up(ctx); err != nil {
				s.Close()
				return nil, &cliError{msg: "migrating the SQLite database: " + err.Error(),
					hint: "restore the database file from a backup or point DATABASE_URL at a new one"}
			}
		}
		db = s
	} else {
		s, err := postgres.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		db = s
	}
	if want == atHead {
		if err := db.Migrator().CheckHead(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// checkSQLitePath refuses a SQLite database an operator named that does not
// exist, unless create; even then its directory must exist.
func checkSQLitePath(path string, create bool) error {
	_, err := os.Stat(path)
	switch {
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

// defaultDatabase reports whether DATABASE_URL names the zero-set-up
// SQLite database (SPEC §1, §8) rather than one an operator chose: the
// data directory's authd.db, or DATABASE_URL's default,
// ./authd-data/authd.db, which is that file unless AUTHD_DATA_DIR moved.
func (c *Config) defaultDatabase() bool {
	path, ok := strings.CutPrefix(c.DatabaseURL, "sqlite://")
	if !ok {
		return false
	}
	path = filepath.Clean(path)
	defPath, _ := strings.CutPrefix(settingDefault("DATABASE_URL"), "sqlite://")
	return path == filepath.Join(c.DataDir, "authd.db") || path == filepath.Clean(defPath)
}

// openConfigured loads the configuration (flags over environment over .env)
// and opens its database, at head.
func openConfigured(ctx context.Context, e *env, flags map[string]*string) (*Config, database, error) {
	cfg, err := loadConfig(flags, e.getenv)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDatabase(ctx, cfg, atHead)
	return cfg, db, err
}
