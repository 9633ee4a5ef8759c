package authd_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/authd/authd"
)

// heldPasswords is a password hasher whose next Verify waits, once its
// check is done, until release is closed: the check of a sensitive change
// then lies before another change's commit and its own transaction after.
type heldPasswords struct {
	authd.Passwords
	hold    bool
	taken   atomic.Bool   // the held Verify is taken (later ones pass)
	checked chan struct{} // closed once the held Verify has checked
	release chan struct{}
}

func (p *heldPasswords) Verify(ctx context.Context, password, hash string) (bool, bool, error) {
	ok, rehash, err := p.Passwords.Verify(ctx, password, hash)
	if p.hold && p.taken.CompareAndSwap(false, true) {
		close(p.checked)
		<-p.release
	}
	return ok, rehash, err
}

// TestChangePasswordOvertaken: of two password changes of one account
// whose checks overlap, the one that commits second is refused, told to
// sign in again (the first may have ended its session), and logged as a
// failure of password_changed: a refused sensitive change leaves its row.
func TestChangePasswordOvertaken(t *testing.T) {
	held := &heldPasswords{checked: make(chan struct{}), release: make(chan struct{})}
	svc, _, store := loginEnvHashing(t, 5, func(p authd.Passwords) authd.Passwords { held.Passwords = p; return held })
	ctx := context.Background()
	var sessions []*authd.AccessClaims
	for range 2 {
		pair, err := svc.Login(ctx, authd.Client{}, "known@example.org", pass, "")
		if err != nil {
			t.Fatal(err)
		}
		a, err := svc.Authenticate(ctx, pair.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, a)
	}
	held.hold = true
	overtaken := make(chan error, 1)
	go func() {
		overtaken <- svc.ChangePassword(ctx, authd.Client{}, sessions[0], pass, "the first new passphrase", authd.StepUp{})
	}()
	<-held.checked // the first change's password is checked; its transaction waits
	if err := svc.ChangePassword(ctx, authd.Client{}, sessions[1], pass, "the second new passphrase", authd.StepUp{}); err != nil {
		t.Fatalf("the second change: %v", err)
	}
	close(held.release)
	err := <-overtaken
	if authd.ErrorCode(err) != authd.EInvalidCredentials || authd.ErrorMessage(err) != "The password was changed meanwhile; sign in again with the new one." {
		t.Errorf("the overtaken change: %v; want invalid_credentials telling to sign in again", err)
	}
	logs, err := store.SecurityLogs(ctx, authd.SecurityLogFilter{UserID: sessions[0].UserID, EventType: authd.EventPasswordChanged})
	if err != nil {
		t.Fatal(err)
	}
	var failed, done int
	for _, l := range logs {
		switch {
		case l.Result == authd.ResultFailure && l.FailureReason == "password changed meanwhile":
			failed++
		case l.Result == authd.ResultSuccess:
			done++
		}
	}
	if failed != 1 || done != 1 {
		t.Errorf("password_changed rows: %d failures for the overtaken change, %d successes; want 1 and 1", failed, done)
	}
}
