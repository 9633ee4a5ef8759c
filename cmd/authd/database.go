package main

import (
	"context"
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

// openDatabase opens the store DATABASE_URL names. The embedded SQLite
// database migrates itself, so that `authd serve` works in an empty
// directory; a PostgreSQL database must be at head, and the error otherwise
// names the command that brings it there.
func openDatabase(ctx context.Context, cfg *Config, requireHead bool) (database, error) {
	var db database
	if path, ok := strings.CutPrefix(cfg.DatabaseURL, "sqlite://"); ok {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		if requireHead {
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
	if requireHead {
		if err := db.Migrator().CheckHead(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// defaultDatabase reports whether DATABASE_URL names the zero-set-up
// SQLite database of the data directory (SPEC §1), rather than one an
// operator chose.
func (c *Config) defaultDatabase() bool {
	path, ok := strings.CutPrefix(c.DatabaseURL, "sqlite://")
	return ok && filepath.Clean(path) == filepath.Join(c.DataDir, "authd.db")
}

// openConfigured loads the configuration (flags over environment over .env)
// and opens its database, at head.
func openConfigured(ctx context.Context, e *env, flags map[string]*string) (*Config, database, error) {
	cfg, err := loadConfig(flags, e.getenv)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDatabase(ctx, cfg, true)
	return cfg, db, err
}
