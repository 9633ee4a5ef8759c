package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/password"
)

// DemoPassword is the password of every demo account `authd seed` creates.
// It is public: never seed a production database.
const DemoPassword = "authd-demo-Passw0rd"

// demoAccount is one account of the demo data and the events that tell its
// story in the security log.
type demoAccount struct {
	email  string
	status authd.AccountStatus
	events []authd.EventType
}

var demoAccounts = []demoAccount{
	{"active@demo.authd.dev", authd.StatusActive,
		[]authd.EventType{authd.EventRegistration, authd.EventEmailVerificationSent, authd.EventEmailVerified, authd.EventLoginSuccess}},
	{"inactive@demo.authd.dev", authd.StatusInactive,
		[]authd.EventType{authd.EventRegistration, authd.EventEmailVerificationSent}},
	{"locked@demo.authd.dev", authd.StatusLocked,
		[]authd.EventType{authd.EventRegistration, authd.EventEmailVerificationSent, authd.EventEmailVerified,
			authd.EventLoginFailure, authd.EventAccountLocked}},
}

func seedCmd(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "seed", "authd seed [--force] [flags]\n\nInserts demo accounts (active and verified, inactive, locked) and their\nsecurity-log rows, skipping any that exist, and prints their credentials.\nOnly into the default database (DATABASE_URL unset: $AUTHD_DATA_DIR/authd.db)\nunless --force, not even that file named in DATABASE_URL: the demo password\nis public.")
	flags := configFlags(fs, "DATABASE_URL", "AUTHD_DATA_DIR")
	force := fs.Bool("force", false, "seed the database DATABASE_URL names too, PostgreSQL or SQLite (never a production one: the demo password is public)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("seed takes no arguments")
	}
	cfg, err := loadConfig(flags, e.getenv)
	if err != nil {
		return err
	}
	// An active, verified account with a published password is a way in
	// for anyone: only the zero-set-up database (DATABASE_URL unset) gets
	// one without being asked, not even the same file named in DATABASE_URL.
	if !cfg.DefaultDatabase && !*force {
		return &cliError{msg: "refusing to seed a database other than the embedded default (DATABASE_URL unset: $AUTHD_DATA_DIR/authd.db): the demo accounts are active, verified and share a published password",
			hint: "pass --force if this database will never serve real users"}
	}
	db, err := openDatabase(ctx, cfg, atHead, e.stderr)
	if err != nil {
		return err
	}
	defer db.Close()

	created, err := seed(ctx, db, cfg.Argon2, authd.SystemClock{}.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d demo account(s) created, %d already present.\n\n", created, len(demoAccounts)-created)
	fmt.Fprintf(e.stdout, "Demo credentials (password for all: %s):\n", DemoPassword)
	for _, a := range demoAccounts {
		fmt.Fprintf(e.stdout, "  %-26s %s\n", a.email, a.status)
	}
	return nil
}

// seed inserts the demo accounts that do not exist yet, each with its
// security-log rows in one transaction, and returns how many it created.
func seed(ctx context.Context, store authd.Store, cost password.Params, now time.Time) (int, error) {
	created := 0
	for _, a := range demoAccounts {
		_, err := store.UserByEmail(ctx, a.email)
		if err == nil {
			continue
		}
		if authd.ErrorCode(err) != authd.ENotFound {
			return created, err
		}
		hash, err := password.Hash(DemoPassword, cost)
		if err != nil {
			return created, err
		}
		u := &authd.User{
			ID: authd.NewID(), Email: a.email, PasswordHash: hash,
			EmailVerified: a.status != authd.StatusInactive, AccountStatus: a.status,
			RegistrationTimestamp: now, LastPasswordChange: now, ConsentTimestamp: now, ConsentStatus: true,
			CreatedAt: now, UpdatedAt: now,
		}
		if a.status == authd.StatusActive {
			u.LastLoginTimestamp = now
		}
		if a.status == authd.StatusLocked {
			u.LockReason = authd.LockAdmin // without an end time, as an administrator locks
		}
		err = store.InTx(ctx, func(tx authd.Queries) error {
			if err := tx.CreateUser(ctx, u); err != nil {
				return err
			}
			for i, ev := range a.events {
				result, reason := authd.ResultSuccess, ""
				if ev == authd.EventLoginFailure {
					result, reason = authd.ResultFailure, "invalid password"
				}
				l := authd.NewSecurityLog(now.Add(time.Duration(i)*time.Millisecond), ev, result, u.ID,
					"127.0.0.1", "authd seed", reason, map[string]any{"source": "seed"})
				if err := tx.CreateSecurityLog(ctx, l); err != nil {
					return err
				}
			}
			return nil
		})
		if authd.ErrorCode(err) == authd.EConflict {
			continue // another seed run created it meanwhile
		}
		if err != nil {
			return created, errors.Join(fmt.Errorf("seed %s", a.email), err)
		}
		created++
	}
	return created, nil
}
