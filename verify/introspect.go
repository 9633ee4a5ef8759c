package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	// defaultMaxIntrospections is Options.MaxIntrospections' default. At
	// about 100 ms a call, 16 at once check 160 new tokens a second, and
	// each token is asked about once per outage (its answer is kept):
	// enough for a busy resource server, while a fleet of them cannot
	// take all of authd's database connections.
	defaultMaxIntrospections = 16
	// defaultIntrospectionTTL is Options.IntrospectionTTL's default: how
	// late a revocation made during a feed outage may be seen, for a token
	// introspected before it. Twice the 15 s a silently dead feed
	// connection may already go unnoticed.
	defaultIntrospectionTTL = 30 * time.Second
	// maxIntrospectionAnswers bounds the answers remembered.
	maxIntrospectionAnswers = 10000
	// introspectionTimeout bounds one call, whoever waits for it, waiting
	// for a free call included.
	introspectionTimeout = 10 * time.Second
	// introspectionPause is how long after a failed call no other is made
	// (breaker).
	introspectionPause = time.Second
)

// introspections shares introspection calls: one in flight per token,
// whose answer every caller asking meanwhile, and until the feed has
// caught up (at most ttl), gets; at most cap(slots) in flight in all; and
// none for a moment after one failed (broken).
type introspections struct {
	slots chan struct{}
	ttl   time.Duration // negative: answers are not kept

	mu      sync.Mutex
	calls   map[string]*introspection
	answers map[string]introspectionAnswer
	broken  breaker
}

// introspection is one call in flight; done is closed once active and err
// are set.
type introspection struct {
	done   chan struct{}
	active bool
	err    error
}

// introspectionAnswer is a token's answer, kept for the outage it was
// given in: epoch is the number of times the feed had caught up when the
// call was made. Once the feed catches up again it replays the
// revocations missed meanwhile, and an answer from before would hide
// those of the next outage.
type introspectionAnswer struct {
	active bool
	until  time.Time // Options.Now: ttl after the answer, or the token's exp if sooner
	epoch  int64
}

func newIntrospections(max int, ttl time.Duration) *introspections {
	if max <= 0 {
		max = defaultMaxIntrospections
	}
	if ttl == 0 {
		ttl = defaultIntrospectionTTL
	}
	return &introspections{slots: make(chan struct{}, max), ttl: ttl,
		calls: map[string]*introspection{}, answers: map[string]introspectionAnswer{}}
}

// breaker remembers that introspection failed, so that while authd cannot
// answer, requests fail at once (ErrUnavailable) rather than each wait up
// to introspectionTimeout for a call of its own: after a failure no call
// is made for introspectionPause, and then one at a time, the others still
// refused, until one succeeds. It is shared by every token: a failure is
// authd's (unreachable, 5xx, a timeout), not the token's.
type breaker struct {
	err    error     // the last failure; nil: calls go ahead
	until  time.Time // wall clock: no call before it
	trying bool      // a call is finding out whether authd answers again
}

// refusal is why no call may start at now, or nil.
func (b *breaker) refusal(now time.Time) error {
	if b.err == nil || (!b.trying && !now.Before(b.until)) {
		return nil
	}
	return fmt.Errorf("not asked, as the last call failed: %w", b.err)
}

// admit lets a call start at now, or says why not; trial is a call made
// to find out whether authd answers again.
func (b *breaker) admit(now time.Time) (trial bool, err error) {
	if err := b.refusal(now); err != nil {
		return false, err
	}
	b.trying = b.err != nil
	return b.trying, nil
}

// record takes a call's outcome at now; err is nil for an answer.
func (b *breaker) record(trial bool, err error, now time.Time) {
	if trial {
		b.trying = false
	}
	if err == nil {
		b.err = nil
		return
	}
	b.err, b.until = err, now.Add(introspectionPause)
}

// introspectShared asks introspection about c's token, sharing the call
// and its answer with the other callers asking about the same token while
// the feed has not caught up since epoch. The call belongs to the
// Verifier, not to the first caller: a caller that gives up (ctx) leaves it
// running for the others.
func (v *Verifier) introspectShared(ctx context.Context, token string, c *Claims, epoch int64) (bool, error) {
	in := v.intro
	in.mu.Lock()
	if a, ok := in.answers[token]; ok && a.epoch == epoch && v.now().Before(a.until) {
		in.mu.Unlock()
		return a.active, nil
	}
	call, ok := in.calls[token]
	if !ok {
		if err := in.broken.refusal(time.Now()); err != nil {
			in.mu.Unlock()
			return false, err
		}
		call = &introspection{done: make(chan struct{})}
		in.calls[token] = call
		if !v.background(func(ctx context.Context) { v.runIntrospection(ctx, token, c.ExpiresAt, epoch, call) }) {
			delete(in.calls, token)
			in.mu.Unlock()
			return false, ErrClosed
		}
	}
	in.mu.Unlock()
	select {
	case <-call.done:
		return call.active, call.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// runIntrospection makes call under the Verifier's context, once a slot is
// free and the breaker allows, and shares its answer (kept until exp at
// the latest).
func (v *Verifier) runIntrospection(vctx context.Context, token string, exp time.Time, epoch int64, call *introspection) {
	in := v.intro
	defer func() {
		in.mu.Lock()
		delete(in.calls, token)
		if call.err == nil && in.ttl > 0 {
			now := v.now()
			if len(in.answers) >= maxIntrospectionAnswers {
				in.forget(now, epoch)
			}
			until := now.Add(in.ttl)
			if exp.Before(until) {
				until = exp
			}
			in.answers[token] = introspectionAnswer{active: call.active, until: until, epoch: epoch}
		}
		in.mu.Unlock()
		close(call.done)
	}()
	ctx, cancel := context.WithTimeout(vctx, introspectionTimeout)
	defer cancel()
	select {
	case in.slots <- struct{}{}:
		defer func() { <-in.slots }()
	case <-ctx.Done():
		call.err = fmt.Errorf("waiting for an introspection slot: %w", ctx.Err())
		return
	}
	in.mu.Lock()
	trial, err := in.broken.admit(time.Now())
	in.mu.Unlock()
	if err != nil {
		call.err = err
		return
	}
	v.introspections.Add(1)
	call.active, call.err = v.introspect(ctx, token)
	in.mu.Lock()
	defer in.mu.Unlock()
	if vctx.Err() != nil { // the Verifier closed: no verdict on authd
		if trial {
			in.broken.trying = false
		}
		return
	}
	in.broken.record(trial, call.err, time.Now())
}

// forget drops the answers expired or of another outage than epoch, or
// all of them if none is (junk tokens must not grow the map); with mu
// held.
func (in *introspections) forget(now time.Time, epoch int64) {
	for t, a := range in.answers {
		if a.epoch != epoch || !now.Before(a.until) {
			delete(in.answers, t)
		}
	}
	if len(in.answers) >= maxIntrospectionAnswers {
		clear(in.answers)
	}
}

// probeToken is what New asks introspection about: no token at all, so
// that authd's answer is {"active":false}, and a log line of it (were
// there one) could not be mistaken for a user's.
const probeToken = "verify-probe"

// probeIntrospection asks Options.IntrospectionURL about probeToken, so
// that a wrong URL or service token shows at New, not in the first feed
// outage, when the fallback needs it. authd answers 200 {"active":false};
// a refusal (3xx, 4xx), an answer that is not introspection's (a login
// page) or one that calls the probe active fails New at once, as the feed
// does. A failure that may pass (unreachable, 5xx) is only logged: the
// feed and the JWKS work, so authd is up, and New need not wait for the
// fallback.
func (v *Verifier) probeIntrospection(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, introspectionTimeout)
	defer cancel()
	active, err := v.introspect(ctx, probeToken)
	switch {
	case err == nil && active:
		return fmt.Errorf("verify: Options.IntrospectionURL %s calls a junk token active: not authd's introspection", v.opts.IntrospectionURL)
	case err == nil:
		return nil
	case errors.As(err, new(introspectionRefused)):
		return fmt.Errorf("verify: Options.IntrospectionURL %s: %w", v.opts.IntrospectionURL, err)
	}
	v.logger.Warn("verify: introspection could not be probed; the fallback may fail while the feed is lost",
		"url", v.opts.IntrospectionURL, "err", err)
	return nil
}

// introspectionRefused marks an introspection answer that retrying will
// not change: a refusal (3xx, 4xx), or a body that is not RFC 7662's.
type introspectionRefused struct{ error }

func (e introspectionRefused) Unwrap() error { return e.error }

// introspect asks authd whether token is active (RFC 7662).
func (v *Verifier) introspect(ctx context.Context, token string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.opts.IntrospectionURL,
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+v.opts.ServiceToken)
	resp, err := v.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch {
	case refusal(resp.StatusCode):
		return false, introspectionRefused{fmt.Errorf("introspection answered %s", resp.Status)}
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Errorf("introspection answered %s", resp.Status)
	}
	var out struct {
		Active *bool `json:"active"` // required (RFC 7662 2.2)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out); err != nil {
		return false, introspectionRefused{fmt.Errorf("introspection's answer is not JSON: %w", err)}
	}
	if out.Active == nil {
		return false, introspectionRefused{errors.New(`introspection's answer has no "active"`)}
	}
	return *out.Active, nil
}
