package storetest

import (
	"context"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/migrate"
	"github.com/google/uuid"
)

// lockFixtures are locked accounts as versions before migration 3 left
// them, and the lock reason migration 3 must give each: literal SQL that
// both dialects accept.
var lockFixtures = []struct {
	id, name string
	until    string // account_locked_until, NULL when empty
	failures int
	events   [][2]string // event type and context, oldest first
	want     authd.LockReason
}{
	{"00000000-0000-7000-8000-000000000001", "brute force", "2030-01-01T00:00:00.000000Z", 5,
		[][2]string{{"login_failure", `{}`}, {"account_locked", `{"until":"2030-01-01T00:00:00Z"}`}}, authd.LockBruteForce},
	{"00000000-0000-7000-8000-000000000002", "timed admin lock on an account with past failures",
		"2030-01-01T00:00:00.000000Z", 2, [][2]string{{"login_failure", `{}`}, {"admin_action", `{"action":"lock"}`}}, authd.LockAdmin},
	{"00000000-0000-7000-8000-000000000003", "admin lock after an old brute-force lock",
		"2030-01-01T00:00:00.000000Z", 5, [][2]string{{"account_locked", `{}`}, {"admin_action", `{"action":"lock"}`}}, authd.LockAdmin},
	{"00000000-0000-7000-8000-000000000004", "admin lock without an end", "", 0,
		[][2]string{{"admin_action", `{"action":"lock"}`}}, authd.LockAdmin},
	{"00000000-0000-7000-8000-000000000005", "locked with no audit trail", "2030-01-01T00:00:00.000000Z", 5, nil, authd.LockAdmin},
}

// LockReasonBackfill checks that migration 3 reads who locked each account
// from the audit trail, and calls any lock it cannot prove to be brute force
// an administrator's: it rolls s (migrated to head) back to migration 2,
// writes the fixtures with exec, and migrates up again.
func LockReasonBackfill(t *testing.T, s authd.Store, m *migrate.Migrator, exec func(sql string) error) {
	t.Helper()
	ctx := context.Background()
	if _, err := m.Down(ctx, migrationsAfter(t, m, 2)); err != nil {
		t.Fatal(err)
	}
	insertLockFixtures(t, exec)
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	checkLockReasons(t, s)
}

// insertLockFixtures writes lockFixtures with exec on a database at
// migration 2.
func insertLockFixtures(t *testing.T, exec func(sql string) error) {
	t.Helper()
	for i, f := range lockFixtures {
		until := "NULL"
		if f.until != "" {
			until = "'" + f.until + "'"
		}
		err := exec(`INSERT INTO users (id, email, password_hash, email_verified, account_status, failed_login_attempts,
			account_locked_until, registration_timestamp, last_password_change, consent_timestamp, consent_status,
			created_at, updated_at) VALUES ('` + f.id + `', 'lock` + f.id[len(f.id)-1:] + `@example.org', '', true, 'locked', ` +
			string(rune('0'+f.failures)) + `, ` + until + `, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z',
			'2026-01-01T00:00:00.000000Z', true, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')`)
		if err != nil {
			t.Fatalf("fixture %d (%s): %v", i, f.name, err)
		}
		for j, ev := range f.events {
			err := exec(`INSERT INTO security_logs (id, event_type, user_id, timestamp, result, additional_context)
				VALUES ('` + uuid.NewString() + `', '` + ev[0] + `', '` + f.id + `', '2026-02-0` + string(rune('1'+j)) +
				`T00:00:00.000000Z', 'success', '` + ev[1] + `')`)
			if err != nil {
				t.Fatalf("fixture %d (%s), event %d: %v", i, f.name, j, err)
			}
		}
	}
}

// checkLockReasons fails unless migration 3 gave each fixture its reason.
func checkLockReasons(t *testing.T, s authd.Store) {
	t.Helper()
	for _, f := range lockFixtures {
		u, err := s.User(context.Background(), uuid.MustParse(f.id))
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		if u.LockReason != f.want {
			t.Errorf("%s: lock reason %q, want %q", f.name, u.LockReason, f.want)
		}
	}
}

// migrationsAfter counts the migrations of m numbered above version, for
// rolling back to it.
func migrationsAfter(t *testing.T, m *migrate.Migrator, version int64) int {
	t.Helper()
	all, err := m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, st := range all {
		if st.Version > version {
			n++
		}
	}
	return n
}

// EmailNFCBackfill checks migration 12: addresses stored before emails were
// composed (NormalizeEmail's NFC) are rewritten in NFC, so that their
// owners can sign in again; one whose NFC form another account already
// holds (the duplicate the old normalisation allowed) is left as it is,
// for an administrator, rather than failing the upgrade.
func EmailNFCBackfill(t *testing.T, s authd.Store, m *migrate.Migrator) {
	t.Helper()
	ctx := context.Background()
	if _, err := m.Down(ctx, migrationsAfter(t, m, 11)); err != nil {
		t.Fatal(err)
	}
	const (
		nfd     = "u\u0308ser@exa\u0308mple.org"
		nfc     = "\u00fcser@ex\u00e4mple.org"
		taken   = "j\u00f6rg@example.org"
		takenD  = "jo\u0308rg@example.org"
		ascii   = "plain@example.org"
		partial = "\u00fcser-a\u0308@example.org" // one letter composed, one not
		// Two decomposed spellings of one address, none composed yet (an
		// acute accent written as U+0301 and as U+0341): the first takes
		// the composed form, the other is left.
		acute1 = "e\u0301ve@example.org"
		acute2 = "e\u0341ve@example.org"
	)
	users := map[string]*authd.User{}
	for _, email := range []string{nfd, taken, takenD, ascii, partial, acute1, acute2} {
		u := NewUser(email)
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser(%q): %v", email, err)
		}
		users[email] = u
	}
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for stored, want := range map[string]string{nfd: nfc, taken: taken, takenD: takenD, ascii: ascii,
		partial: "\u00fcser-\u00e4@example.org", acute1: "\u00e9ve@example.org", acute2: acute2} {
		got, err := s.User(ctx, users[stored].ID)
		if err != nil || got.Email != want {
			t.Errorf("the user stored as %q: %+q, %v; want %+q", stored, got.Email, err, want)
		}
	}
	if u, err := s.UserByEmail(ctx, nfc); err != nil || u.ID != users[nfd].ID {
		t.Errorf("UserByEmail(the NFC form) = %v, %v; want the user stored decomposed", u, err)
	}
}
