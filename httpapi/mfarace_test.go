package httpapi_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
)

// race sends the requests at once and returns how many answered 200 and
// the other answers, which must all be refusals of the token or the code
// (never a 5xx or a rate limit that would make one success meaningless).
func race(t *testing.T, n int, send func(i int) response) (ok int, others []string) {
	t.Helper()
	defer func() {
		for _, o := range others {
			if o != "400 invalid_token" && o != "401 invalid_credentials" {
				t.Errorf("a racing request answered %s, want 400 invalid_token or 401 invalid_credentials", o)
			}
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			r := send(i)
			mu.Lock()
			defer mu.Unlock()
			if r.status == 200 {
				ok++
			} else {
				others = append(others, fmt.Sprintf("%d %s", r.status, r.body["code"]))
			}
		})
	}
	close(start)
	wg.Wait()
	return ok, others
}

// TestSecondFactorSingleUseUnderRace: whatever arrives at once, an
// mfa_token finishes one login, a TOTP code is accepted once, and a
// recovery code is spent once (rows locked by the transaction).
func TestSecondFactorSingleUseUnderRace(t *testing.T) {
	onBothStores(t, func(t *testing.T, open func(*testing.T) authd.Store) {
		e := newEnv(t, open(t))
		_, secret, codes := e.mfaUser("race@example.org")

		token := e.mfaLogin("race@example.org")
		code := totpAt(t, secret, e.clock.Now())
		if ok, others := race(t, 6, func(int) response { return e.verify(token, "totp", code) }); ok != 1 {
			t.Errorf("one mfa_token redeemed %d times at once (others: %v), want once", ok, others)
		}

		e.clock.Advance(30 * time.Second)
		tokens := []string{e.mfaLogin("race@example.org"), e.mfaLogin("race@example.org"), e.mfaLogin("race@example.org")}
		code = totpAt(t, secret, e.clock.Now())
		if ok, others := race(t, len(tokens), func(i int) response { return e.verify(tokens[i], "totp", code) }); ok != 1 {
			t.Errorf("one TOTP code accepted %d times at once (others: %v), want once", ok, others)
		}

		e.clock.Advance(20 * time.Minute) // past any lock the refused codes may have counted toward
		tokens = []string{e.mfaLogin("race@example.org"), e.mfaLogin("race@example.org"), e.mfaLogin("race@example.org")}
		if ok, others := race(t, len(tokens), func(i int) response { return e.verify(tokens[i], "recovery_code", codes[0]) }); ok != 1 {
			t.Errorf("one recovery code spent %d times at once (others: %v), want once", ok, others)
		}
	})
}
