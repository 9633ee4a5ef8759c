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
	"time"

	"github.com/authd/authd"
	"github.com/pressly/goose/v3"
)

// Migrator applies one store's migrations to its database.
type Migrator struct {
	provider *goose.Provider
}

// New returns a Migrator for the migrations in fsys (SQL files at its root).
func New(dialect goose.Dialect, db *sql.DB, fsys fs.FS, opts ...goose.ProviderOption) (*Migrator, error) {
	opts = append([]goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}, opts...)
	p, err := goose.NewProvider(dialect, db, fsys, opts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Migrator{provider: p}, nil
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
func (m *Migrator) Up(ctx context.Context) ([]Result, error) {
	rs, err := m.provider.Up(ctx)
	out := make([]Result, 0, len(rs))
	for _, r := range rs {
		out = append(out, result(r))
	}
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		for _, r := range partial.Applied {
			out = append(out, result(r))
		}
		return out, fmt.Errorf("migration %s failed: %w", filepath.Base(partial.Failed.Source.Path), partial.Err)
	}
	return out, err
}

// Down rolls back the n most recent migrations (fewer when fewer are applied).
func (m *Migrator) Down(ctx context.Context, n int) ([]Result, error) {
	if n < 1 {
		return nil, fmt.Errorf("down needs a positive number of steps, got %d", n)
	}
	var out []Result
	for range n {
		r, err := m.provider.Down(ctx)
		if errors.Is(err, goose.ErrNoNextVersion) {
			break
		}
		if err != nil {
			return out, err
		}
		out = append(out, result(r))
	}
	return out, nil
}

// ErrNothingApplied is Redo's error on a database at version 0.
var ErrNothingApplied = errors.New("no migration is applied, so there is nothing to redo")

// Redo rolls back the most recent migration and applies it again.
func (m *Migrator) Redo(ctx context.Context) ([]Result, error) {
	down, err := m.provider.Down(ctx)
	if errors.Is(err, goose.ErrNoNextVersion) {
		return nil, ErrNothingApplied
	}
	if err != nil {
		return nil, err
	}
	up, err := m.provider.UpByOne(ctx)
	if err != nil {
		return []Result{result(down)}, err
	}
	return []Result{result(down), result(up)}, nil
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
		return &authd.Error{
			Code:    authd.EUnavailable,
			Message: fmt.Sprintf("database schema is at version %d, newer than this authd knows (%d)", current, head),
			Hint:    "run the authd release that migrated it, or roll back with that release's `authd migrate down`",
		}
	}
	return nil
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_]*$`)

// ErrBadName is Create's error for a name that is not letters, digits and
// underscores (spaces become underscores).
var ErrBadName = errors.New("use letters, digits and underscores")

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
			return nil, fmt.Errorf("migration directories are out of step: %s ends at %d, another at %d", dir, v, next-1)
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
