package httpapi_test

import (
	"context"
	"testing"

	"github.com/authd/authd/postgres"
	"github.com/authd/authd/storetest"
)

// TestPasskeySignInOnOneConnection: a passkey sign-in holds one database
// connection at a time, so a full pool of sign-ins still finishes (a read
// of the store inside the transaction waited for ever on a pool of one).
func TestPasskeySignInOnOneConnection(t *testing.T) {
	t.Parallel()
	s, err := postgres.Open(context.Background(), storetest.PostgresURL(t)+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Migrator().Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, s)
	_, k, _ := e.passkeyUser("one-conn@example.org")
	cred := k.Get(e.beginSignIn())
	want(t, "passkey sign-in on a pool of one connection",
		e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": cred, "device_info": "laptop"}), 200, "")
}
