package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// testUserData checks the export's read: every row of the user and none of
// another's, table by table in the order of authd.UserRows, each table
// oldest first; nil functions skip their table; a function's error stops
// the read and comes back unchanged.
func testUserData(t *testing.T, s authd.Store) {
	ctx := context.Background()
	u := mustCreateUser(t, s, "judy@example.org")
	other := mustCreateUser(t, s, "mallory@example.org")

	// Rows inserted newest first, so that only ORDER BY can put them oldest first.
	var wantRows []string
	at := func(i int) time.Time { return Epoch.Add(time.Duration(i) * time.Minute) }
	for _, owner := range []*authd.User{other, u} {
		for i := 2; i >= 0; i-- {
			sess := newSession(owner)
			sess.CreatedAt = at(i)
			tok := newToken(owner, sess, authd.TokenRefresh, fmt.Sprintf("digest-%s-%d", owner.ID, i))
			tok.IssuedAt = at(i)
			v := &authd.VerificationToken{ID: authd.NewID(), Token: fmt.Sprintf("v-%s-%d", owner.ID, i), UserID: owner.ID,
				TokenType: authd.PasswordReset, CreatedAt: at(i), ExpiresAt: at(i).Add(time.Hour)}
			m := &authd.OutboxMail{ID: authd.NewID(), Kind: authd.MailPasswordChanged, UserID: owner.ID, To: owner.Email,
				CreatedAt: at(i), NextAttemptAt: at(i)}
			logs := []*authd.SecurityLog{
				authd.NewSecurityLog(at(i), authd.EventConsentUpdated, authd.ResultSuccess, owner.ID, "", "", "",
					map[string]any{"consent": i%2 == 0}),
				authd.NewSecurityLog(at(i).Add(time.Second), authd.EventLoginSuccess, authd.ResultSuccess, owner.ID, "", "", "", nil),
			}
			if i == 0 {
				logs = append(logs,
					authd.NewSecurityLog(at(i).Add(-time.Second), authd.EventRegistration, authd.ResultSuccess, owner.ID, "", "", "", nil),
					authd.NewSecurityLog(at(i).Add(-2*time.Second), authd.EventRegistration, authd.ResultFailure, owner.ID, "", "", "taken", nil))
			}
			err := s.InTx(ctx, func(tx authd.Queries) error {
				return errors.Join(tx.CreateSession(ctx, sess), tx.CreateToken(ctx, tok), tx.CreateVerificationToken(ctx, v),
					tx.EnqueueMail(ctx, m), tx.CreateSecurityLog(ctx, logs[0]), tx.CreateSecurityLog(ctx, logs[1]))
			})
			if err != nil {
				t.Fatalf("insert rows: %v", err)
			}
			for _, l := range logs[2:] {
				if err := s.CreateSecurityLog(ctx, l); err != nil {
					t.Fatal(err)
				}
			}
			if owner == u {
				wantRows = append(wantRows, "session "+sess.ID.String(), "token "+tok.ID.String(),
					"verification "+v.ID.String(), "mail "+m.ID.String())
				for _, l := range logs {
					wantRows = append(wantRows, "log "+l.ID.String())
					if l.EventType == authd.EventConsentUpdated || l.Result == authd.ResultSuccess && l.EventType == authd.EventRegistration {
						wantRows = append(wantRows, "consent "+l.ID.String())
					}
				}
			}
		}
	}

	type call struct {
		table string
		id    uuid.UUID
		at    time.Time
	}
	var calls []call
	record := func(table string) func(id uuid.UUID, at time.Time) error {
		return func(id uuid.UUID, at time.Time) error { calls = append(calls, call{table, id, at}); return nil }
	}
	rows := func(r func(string) func(uuid.UUID, time.Time) error) authd.UserRows {
		return authd.UserRows{
			User:               func(v *authd.User) error { return r("user")(v.ID, v.CreatedAt) },
			ConsentLogs:        func(v *authd.SecurityLog) error { return r("consent")(v.ID, v.Timestamp) },
			Sessions:           func(v *authd.Session) error { return r("session")(v.ID, v.CreatedAt) },
			Tokens:             func(v *authd.Token) error { return r("token")(v.ID, v.IssuedAt) },
			VerificationTokens: func(v *authd.VerificationToken) error { return r("verification")(v.ID, v.CreatedAt) },
			SecurityLogs:       func(v *authd.SecurityLog) error { return r("log")(v.ID, v.Timestamp) },
			Mails:              func(v *authd.OutboxMail) error { return r("mail")(v.ID, v.CreatedAt) },
		}
	}
	if err := s.UserData(ctx, u.ID, rows(record)); err != nil {
		t.Fatalf("UserData: %v", err)
	}
	order := []string{"user", "consent", "session", "token", "verification", "log", "mail"}
	var got []string
	for i, c := range calls {
		got = append(got, c.table+" "+c.id.String())
		if i == 0 {
			continue
		}
		prev := calls[i-1]
		if slices.Index(order, c.table) < slices.Index(order, prev.table) {
			t.Errorf("a %s row after a %s row; want the tables in the order of UserRows", c.table, prev.table)
		}
		if c.table == prev.table && c.at.Before(prev.at) {
			t.Errorf("%s rows not oldest first: %s before %s", c.table, prev.at, c.at)
		}
	}
	if len(calls) == 0 || calls[0] != (call{"user", u.ID, u.CreatedAt}) {
		t.Fatalf("first call %v, want the user", calls)
	}
	wantRows = append(wantRows, "user "+u.ID.String())
	slices.Sort(wantRows)
	slices.Sort(got)
	if diff := cmp.Diff(wantRows, got); diff != "" {
		t.Errorf("UserData rows (-want +got):\n%s", diff)
	}

	// Nil functions skip their tables.
	calls = nil
	if err := s.UserData(ctx, u.ID, authd.UserRows{Mails: rows(record).Mails}); err != nil || len(calls) != 3 {
		t.Errorf("UserData with only Mails: %d calls, %v; want the 3 mails", len(calls), err)
	}

	// A function's error ends the read and comes back as it was.
	stop := errors.New("client went away")
	calls = nil
	failing := rows(func(table string) func(uuid.UUID, time.Time) error {
		return func(id uuid.UUID, at time.Time) error {
			calls = append(calls, call{table, id, at})
			if table == "token" {
				return stop
			}
			return nil
		}
	})
	if err := s.UserData(ctx, u.ID, failing); err != stop {
		t.Errorf("UserData with a failing function = %v, want its error unchanged", err)
	}
	if last := calls[len(calls)-1]; last.table != "token" || len(calls) != 1+4+3+1 {
		t.Errorf("after the failing token: %d calls, the last a %s; want the read to stop there", len(calls), last.table)
	}

	calls = nil
	err := s.UserData(ctx, authd.NewID(), rows(record))
	wantCode(t, "UserData of an unknown user", err, authd.ENotFound)
	if len(calls) != 0 {
		t.Errorf("UserData of an unknown user made %d calls", len(calls))
	}
}
