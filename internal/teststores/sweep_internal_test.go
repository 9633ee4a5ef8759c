package teststores

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/authd/authd/storetest"
	"github.com/jackc/pgx/v5"
)

// TestStaleTemplatesAreSwept: a template made more than a day ago (its
// binary ended without dropping it) is dropped; a younger one, which a
// running binary may be copying, is kept.
func TestStaleTemplatesAreSwept(t *testing.T) {
	base := storetest.PostgresBase(t)
	ctx := context.Background()
	now := time.Now()
	made := map[string]bool{} // name: to be swept
	for _, age := range []time.Duration{25 * time.Hour, time.Hour} {
		prefix := fmt.Sprintf("%s%d_", templatePrefix, now.Add(-age).Unix())
		name, err := storetest.CreateDatabase(ctx, base, prefix, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { storetest.DropDatabase(ctx, base, name) }) //nolint:errcheck // gone already, if swept
		made[name] = age > 24*time.Hour
	}
	if err := sweepTemplates(ctx, base, now); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for name, stale := range made {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists == stale {
			t.Errorf("template %s (stale: %v) exists: %v", name, stale, exists)
		}
	}
}
