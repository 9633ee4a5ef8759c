// Package migrate runs the stores' embedded SQL migrations with goose and
// gives them the seed's Alembic-style workflow: up, down N, redo, status,
// history, version, check and create.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/authd/authd"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Migrator applies one store's migrations to its database.
type Migrator struct {
	provider *goose.Provider
	serial   *CommandLock // nil: commands are not serialised
	onWait   func()       // see OnLockWait
}

// LockNotice is how long a command waits for the command lock before
// OnLockWait's function is called.
const LockNotice = time.Second

// OnLockWait sets f, called once when a command has waited LockNotice for
// the command lock (another command holds it), and never after the
// command has it: a CLI tells its user why nothing happens yet.
func (m *Migrator) OnLockWait(f func()) { m.onWait = f }

// CommandLock serialises migration commands: Locker is held, on a
// connection of a database Open returns, for the whole of each command that
// changes the schema (Up, Down, Redo). goose takes its own lock for each
// step, and another command's steps must not come between a command's
// count and its steps, or between a redo's two halves. Its lock must not be
// goose's own. The connection is not the store's pool's: a pool of one
// would have none left for goose, and closing it ends its session, and the
// session's lock with it, whatever happens.
type CommandLock struct {
	Locker lock.SessionLocker
	Open   func() (*sql.DB, error)
}

// ErrCommandLock is the error of a command that could not take the
// CommandLock (another command held it for as long as Locker waits).
var ErrCommandLock = errors.New("could not take the migration command lock")

// New returns a Migrator for the migrations in fsys (SQL files at its root);
// serial may be nil.
func New(dialect goose.Dialect, db *sql.DB, fsys fs.FS, serial *CommandLock, opts ...goose.ProviderOption) (*Migrator, error) {
	opts = append([]goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}, opts...)
	p, err := goose.NewProvider(dialect, db, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Migrator{provider: p, serial: serial}, nil
}

// exclusive runs fn holding the command lock, when there is one.
func (m *Migrator) exclusive(ctx context.Context, fn func() error) error {
	if m.serial == nil {
		return fn()
	}
	db, err := m.serial.Open()
	if err != nil {
		return fmt.Errorf("taking the migration command lock: %w", err)
	}
	defer db.Close() // the connection's session ends, and its lock with it
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := m.lock(ctx, conn); err != nil {
		if errors.Unwrap(err) != nil {
			// The lock query itself failed: goose wraps that cause, and
			// neither its "failed to acquire lock" after every retry nor
			// the context's end while it waited wraps any.
			return fmt.Errorf("taking the migration command lock: %w", err)
		}
		return fmt.Errorf("%w (another `authd migrate` may be running): %w", ErrCommandLock, err)
	}
	err = fn()
	if perr := conn.PingContext(context.WithoutCancel(ctx)); perr != nil {
		// The session, and the lock with it, ended while the command ran:
		// another command may have come between its steps.
		return errors.Join(err, fmt.Errorf("the migration command lock was lost while the command ran "+
			"(its connection: %w); check `authd migrate status`", perr))
	}
	return err
}

// lock takes the command lock on conn, calling onWait if that takes longer
// than LockNotice; onWait has returned by the time lock does.
func (m *Migrator) lock(ctx context.Context, conn *sql.Conn) error {
	if m.onWait == nil {
		return m.serial.Locker.SessionLock(ctx, conn)
	}
	taken := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-time.After(LockNotice):
			m.onWait()
		case <-taken:
		}
	})
	err := m.serial.Locker.SessionLock(ctx, conn)
	close(taken)
	wg.Wait()
	return err
}

// Result says what one migration step did.
type Result struct {
	Version   int64
	Name      string
	Direction string // "up" or "down"
	Duration  time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("%-4s %s (%s)", r.Direction, r.Name, r.Duration.Round(time.Microsecond))
}

func result(r *goose.MigrationResult) Result {
	return Result{
		Version:   r.Source.Version,
		Name:      filepath.Base(r.Source.Path),
		Direction: r.Direction,
		Duration:  r.Duration,
	}
}

// Up applies every pending migration.
func (m *Migrator) Up(ctx context.Context) (out []Result, err error) {
	if pending, err := m.provider.HasPending(ctx); err == nil && !pending {
		// Nothing to apply (an error, a gap, a newer database: told under
		// the lock): no lock to take, for the many commands that run Up
		// to be sure (every command on SQLite's default database).
		if current, head, err := m.Version(ctx); err == nil && current <= head {
			return nil, nil
		}
	}
	err = m.exclusive(ctx, func() error {
		if err := m.RefuseNewer(ctx); err != nil {
			return err
		}
		rs, err := m.provider.Up(ctx)
		for _, r := range rs {
			out = append(out, result(r))
		}
		var partial *goose.PartialError
		if errors.As(err, &partial) {
			for _, r := range partial.Applied {
				out = append(out, result(r))
			}
			return &FailedError{Name: filepath.Base(partial.Failed.Source.Path), Err: partial.Err}
		}
		return err
	})
	return out, err
}

// FailedError is Up's report of the migration that failed; those before it
// are applied, it is not recorded as applied.
type FailedError struct {
	Name string
	Err  error
}

func (e *FailedError) Error() string { return fmt.Sprintf("migration %s failed: %v", e.Name, e.Err) }
func (e *FailedError) Unwrap() error { return e.Err }

// TooManyError is Down's refusal of more steps than there are migrations
// applied: a typo (down 100 for down 10), not a wish to drop every table.
type TooManyError struct{ Steps, Applied int }

func (e *TooManyError) Error() string {
	return fmt.Sprintf("down %d: only %d migrations are applied", e.Steps, e.Applied)
}

// Down rolls back the n most recent migrations: none when none is applied,
// a *TooManyError when fewer than n are.
func (m *Migrator) Down(ctx context.Context, n int) (out []Result, err error) {
	if n < 1 {
		return nil, fmt.Errorf("down needs a positive number of steps, got %d", n)
	}
	err = m.exclusive(ctx, func() error {
		if err := m.RefuseNewer(ctx); err != nil {
			return err
		}
		ss, err := m.provider.Status(ctx)
		if err != nil {
			return err
		}
		applied := 0
		for _, st := range ss {
			if st.State == goose.StateApplied {
				applied++
			}
		}
		if applied > 0 && n > applied {
			return &TooManyError{Steps: n, Applied: applied}
		}
		for range min(n, applied) {
			r, err := m.provider.Down(ctx)
			if err != nil {
				return err
			}
			out = append(out, result(r))
		}
		return nil
	})
	return out, err
}

// ErrNothingApplied is Redo's error on a database at version 0.
var ErrNothingApplied = errors.New("no migration is applied, so there is nothing to redo")

// Redo rolls back the most recent migration and applies it again.
func (m *Migrator) Redo(ctx context.Context) (out []Result, err error) {
	err = m.exclusive(ctx, func() error {
		if err := m.RefuseNewer(ctx); err != nil {
			return err
		}
		down, err := m.provider.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			return ErrNothingApplied
		}
		if err != nil {
			return err
		}
		out = append(out, result(down))
		up, err := m.provider.UpByOne(ctx)
		if err != nil {
			return err
		}
		out = append(out, result(up))
		return nil
	})
	return out, err
}

// Version returns the database's current version and the newest one known.
func (m *Migrator) Version(ctx context.Context) (current, head int64, err error) {
	return m.provider.GetVersions(ctx)
}

// Status is one migration and whether it is applied.
type Status struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time // zero when pending
}

// Status lists every known migration, oldest first.
func (m *Migrator) Status(ctx context.Context) ([]Status, error) {
	ss, err := m.provider.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(ss))
	for _, s := range ss {
		out = append(out, Status{
			Version:   s.Source.Version,
			Name:      filepath.Base(s.Source.Path),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// CheckHead returns nil when every migration is applied, and otherwise an
// EUnavailable error that names both versions and the command that fixes it.
func (m *Migrator) CheckHead(ctx context.Context) error {
	current, head, err := m.Version(ctx)
	if err != nil {
		return err
	}
	if current < head {
		return &authd.Error{
			Code:    authd.EUnavailable,
			Message: fmt.Sprintf("database schema is at version %d, but this authd needs version %d", current, head),
			Hint:    "run `authd migrate up` to apply the pending migrations",
		}
	}
	if current > head {
		return errNewer(current, head)
	}
	return nil
}

// errNewer is the error of a database that a later authd migrated past
// the head this one knows.
func errNewer(current, head int64) error {
	return &authd.Error{
		Code:    authd.EUnavailable,
		Message: fmt.Sprintf("database schema is at version %d, newer than this authd knows (%d)", current, head),
		Hint:    "run the authd release that migrated it, or roll back with that release's `authd migrate down`",
	}
}

// RefuseNewer refuses a database that a later authd migrated past this
// one's head: a change of its schema, where goose would call it at head
// (up) or fail to find the migration to roll back ("version not found"),
// or a listing that would read as a database at head. That release's own
// commands know its migrations.
func (m *Migrator) RefuseNewer(ctx context.Context) error {
	current, head, err := m.Version(ctx)
	if err == nil && current > head {
		err = errNewer(current, head)
	}
	return err
}

// nameRE bounds a name to 100 bytes: with the number and ".sql" a file
// name stays far below the 255 bytes file systems take.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,99}$`)

// ErrBadName is Create's error for a name that is not letters, digits and
// underscores (spaces become underscores), or longer than 100.
var ErrBadName = errors.New("use letters, digits and underscores, at most 100")

// ErrOutOfStep is Create's error for dialects whose migrations end at
// different versions.
var ErrOutOfStep = errors.New("migration directories are out of step")

// Create writes a new, empty migration with the next number into each of
// dirs (one per SQL dialect) and returns the paths written. All dirs must end
// at the same version, so that the dialects stay in step.
func Create(dirs []string, name string) ([]string, error) {
	name = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(name), " ", "_"))
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("migration name %q: %w", name, ErrBadName)
	}
	var next int64 = -1
	for _, dir := range dirs {
		v, err := lastVersion(dir)
		if err != nil {
			return nil, err
		}
		if next >= 0 && v+1 != next {
			return nil, fmt.Errorf("%w: %s ends at %d, another at %d", ErrOutOfStep, dir, v, next-1)
		}
		next = v + 1
	}
	var paths []string
	for _, dir := range dirs {
		path := filepath.Join(dir, fmt.Sprintf("%05d_%s.sql", next, name))
		body := fmt.Sprintf(template, name)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return paths, err
		}
		if _, err := f.WriteString(body); err != nil {
			f.Close()
			return paths, err
		}
		if err := f.Close(); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

const template = `-- %s: say what this migration changes and why.

-- +goose Up

-- +goose Down
`

func lastVersion(dir string) (int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("read migrations: %w", err)
	}
	var last int64
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".sql" {
			continue
		}
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return 0, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err)
		}
		last = max(last, v)
	}
	return last, nil
}
