// Package storetest holds what the store tests share: the contract suite
// that every authd.Store must pass, the seed's schema as the catalog tests
// expect it, and a fresh PostgreSQL database per test.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURL creates an empty database on the server of TEST_DATABASE_URL,
// drops it when the test ends, and returns its URL. Without
// TEST_DATABASE_URL the test is skipped, except under CI (CI set), where
// skipping would hide the PostgreSQL suites and so fails the test.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return PostgresURLWith(t, "")
}

// PostgresURLWith is PostgresURL for a database created with options
// (CREATE DATABASE's, such as ENCODING).
func PostgresURLWith(t testing.TB, options string) string {
	t.Helper()
	base := PostgresBase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := CreateDatabase(ctx, base, "authd_test_", options)
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropDatabase(ctx, base, name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return DatabaseURL(base, name)
}

// PostgresBase returns TEST_DATABASE_URL, skipping the test without it
// (failing it under CI) and failing it when it is not a postgres:// URL.
func PostgresBase(t testing.TB) string {
	t.Helper()
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("TEST_DATABASE_URL is not set: CI must run the PostgreSQL-backed tests")
		}
		t.Skip("TEST_DATABASE_URL is not set: skipping a PostgreSQL-backed test (see README, Tests)")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("TEST_DATABASE_URL must be a postgres:// URL, got %q", base)
	}
	return base
}

// CreateDatabase creates a database of a new name (prefix and 16 hex
// digits) on the server of base, with CREATE DATABASE's options, and
// returns the name. Dropping it is the caller's.
func CreateDatabase(ctx context.Context, base, prefix, options string) (string, error) {
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("connect to TEST_DATABASE_URL: %w", err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 8)
	rand.Read(b)
	name := prefix + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" "+options); err != nil {
		return "", err
	}
	return name, nil
}

// DropDatabase drops the database name on the server of base, whoever is
// connected to it.
func DropDatabase(ctx context.Context, base, name string) error {
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	return err
}

// DatabaseURL is base (a postgres:// URL) naming the database name.
func DatabaseURL(base, name string) string {
	u, _ := url.Parse(base) // PostgresBase parsed it
	u.Path = "/" + name
	return u.String()
}

// LockWaits is a query that counts the backends of the current database
// waiting for a lock that a backend of the same database holds: a test's
// transactions waiting for each other. Waits on what other databases'
// backends hold — the cluster-wide lock that serialises the commits of
// transactions that NOTIFY, under a busy CI — are not theirs to count.
// $1 narrows it to the waiters whose statement contains it ("" for all).
const LockWaits = `SELECT count(*) FROM pg_stat_activity w
	WHERE w.datname = current_database() AND w.wait_event_type = 'Lock' AND strpos(w.query, $1) > 0
	AND EXISTS (SELECT FROM pg_stat_activity b
		WHERE b.pid = ANY (pg_blocking_pids(w.pid)) AND b.datname = current_database())`
