package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/authd/authd/migrate"
	"github.com/authd/authd/postgres"
	"github.com/authd/authd/sqlite"
)

const migrateSynopsis = `authd migrate [flags] ACTION

Actions (the seed's Alembic workflow):
  up          apply every pending migration            (alembic upgrade head)
  down [N]    roll back the last N migrations, 1 by default (alembic downgrade -N)
  redo        roll back the last migration and apply it again
  status      list every migration as applied or pending
  version     print the current schema version          (alembic current)
  history     list every migration, newest first, marking head and current
  check       exit 1 when the database is not at head
  create NAME write a new empty numbered migration for each SQL dialect
              into the source tree (run from the repository root)`

func migrateCmd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "migrate", migrateSynopsis)
	flags := configFlags(fs, "DATABASE_URL", "AUTHD_DATA_DIR")
	root := fs.String("root", ".", "repository root, for create")
	words, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return usagef("missing ACTION (up, down, redo, status, version, history, check or create)")
	}
	action, rest := words[0], words[1:]

	if action == "create" {
		if len(rest) != 1 {
			return usagef("create takes one NAME, such as add_outbox")
		}
		return migrateCreate(e, *root, rest[0])
	}
	n := 1
	switch action {
	case "down":
		if len(rest) > 1 {
			return usagef("down takes at most one number")
		}
		if len(rest) == 1 {
			v, err := strconv.Atoi(rest[0])
			if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(rest[0], "-") {
				return usagef("down N: %s is more migrations than there will ever be", rest[0])
			}
			if err != nil || v < 1 {
				return usagef("down N: N must be a positive whole number, got %q", rest[0])
			}
			n = v
		}
	case "up", "redo", "status", "version", "history", "check":
		if len(rest) > 0 {
			return usagef("%s takes no arguments", action)
		}
	default:
		return usagef("unknown action %q", action)
	}

	cfg, err := loadConfig(flags, e.getenv)
	if err != nil {
		return err
	}
	want := anyVersion
	if action == "up" {
		want = creating // the one way to a new database other than the default
	}
	db, err := openDatabase(ctx, cfg, want, e.stderr)
	if err != nil {
		return err
	}
	defer db.Close()
	m := db.Migrator()
	m.OnLockWait(func() {
		fmt.Fprintln(e.stderr, "waiting for another `authd migrate` command to finish (it holds the migration command lock)")
	})

	var results []migrate.Result
	switch action {
	case "up":
		results, err = m.Up(ctx)
		if err == nil && len(results) == 0 {
			fmt.Fprintln(e.stdout, "already at head; nothing to apply")
		}
	case "down":
		results, err = m.Down(ctx, n)
		if tooMany, ok := errors.AsType[*migrate.TooManyError](err); ok {
			return &cliError{msg: err.Error(), hint: fmt.Sprintf("`authd migrate status` lists them; "+
				"`authd migrate down %d` rolls back every one (and drops every table)", tooMany.Applied)}
		}
		if err == nil && len(results) == 0 {
			fmt.Fprintln(e.stdout, "no migration is applied; nothing to roll back")
		}
	case "redo":
		results, err = m.Redo(ctx)
		if errors.Is(err, migrate.ErrNothingApplied) {
			err = &cliError{msg: err.Error(), hint: "run `authd migrate up` first"}
		}
	case "status", "history":
		return migrateList(ctx, e, m, action == "history")
	case "version":
		current, _, err := m.Version(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, current)
		return nil
	case "check":
		if err := m.CheckHead(ctx); err != nil {
			return err
		}
		current, _, _ := m.Version(ctx)
		fmt.Fprintf(e.stdout, "at head (version %d)\n", current)
		return nil
	}
	for _, r := range results {
		fmt.Fprintln(e.stdout, r)
	}
	if errors.Is(err, migrate.ErrCommandLock) {
		return &cliError{msg: err.Error(), hint: "another `authd migrate` (or a start or seed migrating the database) holds " +
			"the lock: let it finish and run the command again (PostgreSQL: pg_locks lists it as an advisory lock, " +
			"pg_stat_activity its session; SQLite: a transaction on the file ending in -migrate-lock)"}
	}
	if postgres.LockTimedOut(err) { // commandLockWait, or the connection's own lock_timeout
		done := "the migration that failed is not recorded as applied, so running it again is safe (those printed above are applied)"
		if action != "up" {
			done = "the roll-back that failed did not happen, so the migration is still applied (those printed above were rolled back)"
		}
		return &cliError{msg: err.Error(), hint: "another database session holds a lock this migration needs " +
			"(a long or idle transaction): find it in pg_stat_activity, let it end, and run the command again; " + done}
	}
	if _, ok := errors.AsType[*migrate.FailedError](err); ok {
		hint := "the migration that failed is not recorded as applied (those printed above are): fix what it says " +
			"and run the command again; a table that \"already exists\" means the database holds tables authd did not " +
			"make (point DATABASE_URL at an empty database)"
		if ctx.Err() != nil {
			hint = "the command was stopped: the migration under way is not recorded as applied (those printed above are); run it again"
		}
		return &cliError{msg: err.Error(), hint: hint}
	}
	return err
}

func migrateList(ctx context.Context, e *env, m *migrate.Migrator, newestFirst bool) error {
	statuses, err := m.Status(ctx)
	if err != nil {
		return err
	}
	current, head, err := m.Version(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tMIGRATION")
	for i := range statuses {
		s := statuses[i]
		if newestFirst {
			s = statuses[len(statuses)-1-i]
		}
		state, at := "pending", "-"
		if s.Applied {
			state, at = "applied", s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
		}
		name := s.Name
		if newestFirst && s.Version == head {
			name += " (head)"
		}
		if newestFirst && s.Version == current {
			name += " (current)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Version, state, at, name)
	}
	if err := tw.Flush(); err != nil || current <= head {
		return err
	}
	// The migrations past head are a later release's, which this one
	// cannot list: the table would read as a database at head.
	return m.RefuseNewer(ctx)
}

func migrateCreate(e *env, root, name string) error {
	dirs := []string{filepath.Join(root, postgres.MigrationsDir), filepath.Join(root, sqlite.MigrationsDir)}
	for _, d := range dirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			return &cliError{msg: fmt.Sprintf("migration directory %s not found", d),
				hint: "run `authd migrate create` from the repository root, or pass --root"}
		}
	}
	paths, err := migrate.Create(dirs, name)
	for _, p := range paths {
		fmt.Fprintf(e.stdout, "created %s\n", p)
	}
	switch {
	case errors.Is(err, migrate.ErrBadName): // nothing written
		return &usageError{cmd: "migrate create", msg: err.Error(), hint: "names are letters, digits and underscores, such as add_outbox"}
	case errors.Is(err, migrate.ErrOutOfStep):
		return &cliError{msg: err.Error(), hint: "every migration has one file per dialect, numbered alike: add the missing one"}
	case err != nil:
		return &cliError{msg: err.Error()}
	}
	fmt.Fprintln(e.stdout, "write the up and down SQL for both dialects; the migrations are embedded at the next build")
	return nil
}
