package teststores_test

import (
	"context"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/teststores"
	"github.com/authd/authd/migrate"
	"github.com/authd/authd/storetest"
)

func TestMain(m *testing.M) { teststores.Main(m) }

type store interface {
	authd.Store
	Migrator() *migrate.Migrator
}

// TestCopiesAreMigratedAndApart: each store opened is at the newest
// migration, and what one test writes is not in another's.
func TestCopiesAreMigratedAndApart(t *testing.T) {
	for name, open := range map[string]func(testing.TB) store{
		"sqlite":   func(t testing.TB) store { return teststores.SQLite(t) },
		"postgres": func(t testing.TB) store { return teststores.Postgres(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			a, b := open(t), open(t)
			for _, s := range []store{a, b} {
				current, head, err := s.Migrator().Version(ctx)
				if err != nil || current != head || head == 0 {
					t.Fatalf("version %d of %d, %v; want the newest", current, head, err)
				}
			}
			if err := a.InTx(ctx, func(q authd.Queries) error {
				return q.CreateUser(ctx, storetest.NewUser("apart@example.org"))
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := a.UserByEmail(ctx, "apart@example.org"); err != nil {
				t.Fatalf("the user written: %v", err)
			}
			if _, err := b.UserByEmail(ctx, "apart@example.org"); authd.ErrorCode(err) != authd.ENotFound {
				t.Fatalf("another copy has the user: %v", err)
			}
			// A third copy, made after the write, starts empty as well.
			if _, err := open(t).UserByEmail(ctx, "apart@example.org"); authd.ErrorCode(err) != authd.ENotFound {
				t.Fatalf("a later copy has the user: %v", err)
			}
		})
	}
}
