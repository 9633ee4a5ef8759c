package httpapi_test

import (
	"context"
	"testing"
	"time"
)

// TestRevocationReachesOtherInstances runs two instances on one PostgreSQL
// database: a logout on one is honoured by the other within a second,
// through LISTEN/NOTIFY and without a restart.
func TestRevocationReachesOtherInstances(t *testing.T) {
	t.Parallel()
	pg := instances(t, 3)
	storeA, storeB := pg[0], pg[1]
	keys := t.TempDir()
	a := newEnv(t, storeA, withKeysDir(keys))
	b := newEnv(t, storeB, withKeysDir(keys))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resynced := make(chan struct{}, 10)
	go storeB.Listen(ctx, b.svc.Revocations().Apply, func(ctx context.Context) {
		b.svc.LoadRevocations(ctx)
		resynced <- struct{}{}
	})
	select {
	case <-resynced:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener never connected")
	}

	a.registerVerified("two@example.org", goodPassword)
	access, _ := a.login("two@example.org", goodPassword)
	want(t, "token of A at B", b.do("GET", "/v1/users/me", nil, bearer(access)...), 200, "")
	want(t, "logout at A", a.do("POST", "/v1/auth/logout", nil, bearer(access)...), 204, "")
	waitUntil(t, time.Second, "B rejects the logged-out token", func() bool {
		return b.do("GET", "/v1/users/me", nil, bearer(access)...).status == 401
	})

	// A lockout blocks the user's tokens everywhere.
	access, _ = a.login("two@example.org", goodPassword)
	for range 5 {
		a.do("POST", "/v1/auth/login", map[string]string{"email": "two@example.org", "password": "not the password"})
	}
	waitUntil(t, time.Second, "B rejects the locked user's token", func() bool {
		return b.do("GET", "/v1/users/me", nil, bearer(access)...).status == 401
	})

	// A fresh instance learns past revocations from the tables.
	c := newEnv(t, pg[2], withKeysDir(keys))
	want(t, "token of a locked user at a new instance", c.do("GET", "/v1/users/me", nil, bearer(access)...), 401, "invalid_token")
	if sessions, users := c.svc.Revocations().Len(); sessions == 0 || users != 1 {
		t.Errorf("new instance loaded %d sessions and %d users, want the revoked session and the locked user", sessions, users)
	}
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
