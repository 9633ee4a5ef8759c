// Package teststores opens migrated stores for the tests that need a store
// rather than its migrations (the HTTP and OpenID suites, hundreds of
// them). Each test gets a database of its own, copied from one that a test
// binary migrates once: under the race detector, migrating SQLite (a C
// library translated to Go, every access instrumented) costs most of a
// second of CPU, and migrating PostgreSQL a quarter of one, each time.
//
// The copies are the migrated schema byte for byte — a file copy for
// SQLite, CREATE DATABASE … TEMPLATE for PostgreSQL — and each store still
// runs Migrator().Up, which finds nothing to apply, as a real start would.
// The migrations themselves are tested where they live (sqlite, postgres,
// migrate, cmd/authd).
//
// A test binary that uses Postgres calls Main from its TestMain, which
// drops the template database when the tests end.
package teststores

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd/migrate"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/storetest"
	"github.com/jackc/pgx/v5"
)

// SQLite opens a migrated SQLite database of its own in a temporary
// directory of t, closed when the test ends.
func SQLite(t testing.TB) *sqlite.Store {
	t.Helper()
	template, err := sqliteTemplate()
	if err != nil {
		t.Fatalf("migrate the SQLite template: %v", err)
	}
	path := filepath.Join(t.TempDir(), "authd.db")
	if err := os.WriteFile(path, template, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(context.Background(), path)
	return opened(t, "SQLite", s, err)
}

// opened fails t unless s opened and is at the newest migration (Up finds
// nothing to apply); it closes s when the test ends.
func opened[S interface {
	Close() error
	Migrator() *migrate.Migrator
}](t testing.TB, kind string, s S, err error) S {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if applied, err := s.Migrator().Up(context.Background()); err != nil || len(applied) > 0 {
		t.Fatalf("the %s database is not the migrated schema: %d applied, %v", kind, len(applied), err)
	}
	return s
}

// sqliteTemplate migrates a database in a directory of its own and returns
// its file once closed, which checkpoints its WAL into it.
var sqliteTemplate = sync.OnceValues(func() ([]byte, error) {
	dir, err := os.MkdirTemp("", "authd-teststores-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "authd.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	_, err = s.Migrator().Up(ctx)
	if err := errors.Join(err, s.Close()); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("the closed template kept its write-ahead log (%v): a copy of its file alone would lose part of it", err)
	}
	return os.ReadFile(path)
})

// Postgres creates a migrated database of its own on the server of
// TEST_DATABASE_URL (skipping the test without it, failing it under CI) and
// opens it; the database is dropped when the test ends.
func Postgres(t testing.TB) *postgres.Store {
	t.Helper()
	return PostgresAt(t, PostgresURL(t))
}

// PostgresURL is Postgres' database, not opened: its URL.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := storetest.PostgresBase(t)
	template, err := pgTemplate(base)
	if err != nil {
		t.Fatalf("migrate the PostgreSQL template: %v", err)
	}
	return storetest.PostgresURLWith(t, "TEMPLATE "+template)
}

// PostgresAt opens the migrated PostgreSQL database at url, closed when the
// test ends.
func PostgresAt(t testing.TB, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	return opened(t, "PostgreSQL", s, err)
}

var (
	pgMu       sync.Mutex
	pgBase     string // the server the template is on
	pgName     string // the template database, once made
	pgTemplErr error
	inMain     bool // Main runs the tests
)

// pgTemplate returns the name of a database on base's server migrated by
// this test binary, made on the first call. It has no connection left open:
// CREATE DATABASE refuses to copy one that has.
func pgTemplate(base string) (string, error) {
	pgMu.Lock()
	defer pgMu.Unlock()
	if pgName != "" || pgTemplErr != nil {
		return pgName, pgTemplErr
	}
	if !inMain {
		return "", errors.New("the test binary's TestMain must call teststores.Main, which drops the template")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now()
	if err := sweepTemplates(ctx, base, now); err != nil {
		pgTemplErr = err
		return "", err
	}
	name, err := storetest.CreateDatabase(ctx, base, fmt.Sprintf("%s%d_", templatePrefix, now.Unix()), "")
	if err != nil {
		pgTemplErr = err
		return "", err
	}
	pgBase, pgName = base, name // Main drops it, whatever happens next
	s, err := postgres.Open(ctx, storetest.DatabaseURL(base, name))
	if err != nil {
		pgTemplErr = err
		return "", err
	}
	_, err = s.Migrator().Up(ctx)
	s.Close()
	if err != nil {
		pgTemplErr = err
		return "", err
	}
	return name, nil
}

// templatePrefix begins the name of every template, followed by the Unix
// time it was made at and an underscore.
const templatePrefix = "authd_tmpl_"

// sweepTemplates drops the templates made more than a day before now: those
// of test binaries that ended without Main's cleanup (a panic, a timeout, a
// kill). A running binary's is younger.
func sweepTemplates(ctx context.Context, base string, now time.Time) error {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1)`, templatePrefix)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range names {
		made, _, _ := strings.Cut(strings.TrimPrefix(name, templatePrefix), "_")
		unix, err := strconv.ParseInt(made, 10, 64)
		if err != nil || now.Sub(time.Unix(unix, 0)) < 24*time.Hour {
			continue // not one of ours, or maybe a running binary's
		}
		if err := storetest.DropDatabase(ctx, base, name); err != nil {
			return fmt.Errorf("drop the stale template %s: %w", name, err)
		}
	}
	return nil
}

// Main runs the tests and drops the PostgreSQL template, if one was made;
// it exits with the tests' code, failing them if the template could not be
// dropped. Call it from TestMain.
func Main(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	pgMu.Lock()
	inMain = true
	pgMu.Unlock()
	code := m.Run()
	pgMu.Lock()
	defer pgMu.Unlock()
	if pgName == "" {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := storetest.DropDatabase(ctx, pgBase, pgName); err != nil {
		fmt.Fprintf(os.Stderr, "drop the template database %s: %v\n", pgName, err)
		return 1
	}
	return code
}
