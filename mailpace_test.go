package authd_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/sqlite"
	"github.com/authd/authd/storetest"
)

// TestMailRequestsAnswerTogether: resend and forgot answer every address
// at one deadline, that of the requests that mail (SPEC §6.6: the same
// time), whether the address has an account, has none, or the request
// mails nothing; the requests that mail keep the deadline current.
func TestMailRequestsAnswerTogether(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Migrator().Up(ctx); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"known@example.org", "verified@example.org"} {
		u := storetest.NewUser(email)
		u.EmailVerified = email == "verified@example.org"
		if err := store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	var slept []time.Duration
	s := authd.NewService(authd.Config{PublicURL: "https://auth.example.org"},
		authd.Deps{Store: store, Sleep: func(d time.Duration) { slept = append(slept, d) }})
	authd.SetMailPace(s, time.Hour, 0) // a request that mails: far longer than any here
	c := authd.Client{IP: "192.0.2.1"}
	for _, r := range []struct {
		name string
		call func() error
	}{
		{"forgot, unknown address", func() error { return s.ForgotPassword(ctx, c, "nobody@example.org") }},
		{"resend, unknown address", func() error { return s.ResendVerification(ctx, c, "nobody@example.org") }},
		{"resend, verified address (mails nothing)", func() error { return s.ResendVerification(ctx, c, "verified@example.org") }},
		{"forgot, known address", func() error { return s.ForgotPassword(ctx, c, "known@example.org") }},
	} {
		slept = nil
		if err := r.call(); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if len(slept) != 1 || slept[0] < 50*time.Minute {
			t.Errorf("%s: padded %v; want to the deadline of about an hour", r.name, slept)
		}
	}
	// Requests that mail, in far less than an hour, bring the deadline
	// down to them.
	for range 40 {
		if err := s.ForgotPassword(ctx, c, "known@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	slept = nil
	if err := s.ForgotPassword(ctx, c, "nobody@example.org"); err != nil || len(slept) != 1 || slept[0] > 5*time.Minute {
		t.Errorf("after requests that mailed quickly: padded %v (%v); want the deadline down to them", slept, err)
	}
	slept = nil
	if err := s.ForgotPassword(ctx, c, "not an address"); authd.ErrorCode(err) != authd.EInvalid || len(slept) != 0 {
		t.Errorf("an invalid address: %v, padded %v; want EInvalid at once", err, slept)
	}
}
