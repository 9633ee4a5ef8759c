package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// testSignInState: the user, their factors and passkeys and the sessions a
// new one would end, read together, inside a transaction and out.
func testSignInState(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "sign-in@example.org")
	bare := mustCreateUser(t, s, "bare@example.org")
	f := newFactor(u)
	if err := s.CreateFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	key := newPasskey(u, "sign-in-key")
	if err := s.CreatePasskey(ctx, key); err != nil {
		t.Fatal(err)
	}
	var sessions []*authd.Session
	for i := range 3 {
		sess := newSession(u)
		sess.LastUsedAt = Epoch.Add(time.Duration(i) * time.Minute) // sessions[2] is the most recently used
		if err := s.CreateSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, sess)
	}
	ended := newSession(u)
	ended.RevokedAt = Epoch
	if err := s.CreateSession(ctx, ended); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, newSession(bare)); err != nil {
		t.Fatal(err)
	}

	now := Epoch.Add(time.Hour)
	check := func(name string, q authd.Queries) {
		t.Helper()
		st, err := q.SignInState(ctx, u.ID, 1, now)
		if err != nil {
			t.Fatalf("%s: SignInState: %v", name, err)
		}
		if st.User.ID != u.ID || st.User.Email != u.Email || st.User.PasswordHash != u.PasswordHash {
			t.Errorf("%s: user %+v, want %+v", name, st.User, u)
		}
		if len(st.Factors) != 1 || st.Factors[0].ID != f.ID || st.Factors[0].Secret != f.Secret {
			t.Errorf("%s: factors %+v, want the one made", name, st.Factors)
		}
		if len(st.Passkeys) != 1 || st.Passkeys[0].ID != key.ID || string(st.Passkeys[0].CredentialID) != "sign-in-key" {
			t.Errorf("%s: passkeys %+v, want the one made", name, st.Passkeys)
		}
		want := []uuid.UUID{sessions[1].ID, sessions[0].ID} // beyond the most recently used, the ended one not
		if len(st.Excess) != 2 || st.Excess[0] != want[0] || st.Excess[1] != want[1] {
			t.Errorf("%s: excess %v, want %v", name, st.Excess, want)
		}
	}
	check("outside a transaction", s)
	if err := s.InTx(ctx, func(tx authd.Queries) error { check("in a transaction", tx); return nil }); err != nil {
		t.Fatal(err)
	}

	st, err := s.SignInState(ctx, u.ID, -1, now)
	if err != nil || st.Excess != nil {
		t.Errorf("SignInState without a session limit: excess %v (%v), want none read", st, err)
	}
	st, err = s.SignInState(ctx, bare.ID, 5, now)
	if err != nil || len(st.Factors) != 0 || len(st.Passkeys) != 0 || len(st.Excess) != 0 {
		t.Errorf("SignInState of a user with nothing to end = %+v, %v; want the user alone", st, err)
	}
	_, err = s.SignInState(ctx, authd.NewID(), 1, now)
	wantCode(t, "SignInState of a missing user", err, authd.ENotFound)
	err = s.InTx(ctx, func(tx authd.Queries) error {
		_, err := tx.SignInState(ctx, authd.NewID(), 1, now)
		return err
	})
	wantCode(t, "SignInState of a missing user in a transaction", err, authd.ENotFound)
}
