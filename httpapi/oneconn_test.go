package httpapi_test

import (
	"net/url"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/teststores"
)

// openOneConnection opens a migrated PostgreSQL store whose pool holds one
// connection: a flow that reads the store outside its own transaction
// waits for ever (until the request's deadline) on it.
func openOneConnection(t *testing.T) authd.Store {
	t.Helper()
	return teststores.PostgresAt(t, onePooledConnection(t, teststores.PostgresURL(t)))
}

// onePooledConnection is the database URL with a pool of one connection.
func onePooledConnection(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", "1")
	u.RawQuery = q.Encode()
	return u.String()
}

// TestPasskeySignInOnOneConnection: a passkey sign-in holds one database
// connection at a time, so a full pool of sign-ins still finishes (a read
// of the store inside the transaction waited for ever on a pool of one).
func TestPasskeySignInOnOneConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openOneConnection(t))
	_, k, _ := e.passkeyUser("one-conn@example.org")
	cred := k.Get(e.beginSignIn())
	want(t, "passkey sign-in on a pool of one connection",
		e.do("POST", "/v1/auth/passkey/finish", map[string]any{"credential": cred, "device_info": "laptop"}), 200, "")
}

// TestLocksOnOneConnection: the failure that sets a lock, and its notice,
// hold one database connection: on a pool of one a count of wrong codes
// ended by a wrong password locks the account and says the password was
// right. The check of an open sign-in read the security log outside the
// transaction: it hung until the deadline, and the lock was rolled back.
func TestLocksOnOneConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openOneConnection(t))
	const email = "one-conn-lock@example.org"
	e.mfaUser(email)
	token := e.mfaLogin(email)
	for range 4 {
		want(t, "a wrong code", e.verify(token, "totp", "000000"), 401, "invalid_credentials")
	}
	want(t, "the wrong password that locks", e.do("POST", "/v1/auth/login",
		map[string]string{"email": email, "password": "not the password"}), 401, "invalid_credentials")
	if u := e.user(email); u.AccountStatus != authd.StatusLocked {
		t.Errorf("account %s after five failures, want locked", u.AccountStatus)
	}
	if m := e.mail.last(t, authd.MailAccountLocked, email); !m.AfterCodes {
		t.Errorf("lock notice %+v, want it to say the password was right", m)
	}
}
