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
	// introspectionTTL is how long an introspection answer is reused for
	// the same token: a burst of requests with one token while the feed is
	// lost costs one call.
	introspectionTTL = time.Second
	// maxIntrospections bounds the calls to authd's introspection in
	// flight at once.
	maxIntrospections = 8
	// maxIntrospectionAnswers bounds the answers remembered.
	maxIntrospectionAnswers = 10000
	// introspectionTimeout bounds one call, whoever waits for it.
	introspectionTimeout = 10 * time.Second
)

// introspections shares introspection calls: one in flight per token,
// whose answer every caller asking meanwhile (and for introspectionTTL
// after) gets, and at most maxIntrospections in flight in all.
type introspections struct {
	slots chan struct{}

	mu      sync.Mutex
	calls   map[string]*introspection
	answers map[string]introspectionAnswer
}

// introspection is one call in flight; done is closed once active and err
// are set.
type introspection struct {
	done   chan struct{}
	active bool
	err    error
}

type introspectionAnswer struct {
	active bool
	until  time.Time // Options.Now
}

func newIntrospections() *introspections {
	return &introspections{slots: make(chan struct{}, maxIntrospections),
		calls: map[string]*introspection{}, answers: map[string]introspectionAnswer{}}
}

// introspectShared asks introspection about token, sharing the call and
// its answer with the other callers asking about the same token. The call
// belongs to the Verifier, not to the first caller: a caller that gives up
// (ctx) leaves it running for the others.
func (v *Verifier) introspectShared(ctx context.Context, token string) (bool, error) {
	in := v.intro
	in.mu.Lock()
	if a, ok := in.answers[token]; ok && v.now().Before(a.until) {
		in.mu.Unlock()
		return a.active, nil
	}
	call, ok := in.calls[token]
	if !ok {
		call = &introspection{done: make(chan struct{})}
		in.calls[token] = call
		if !v.background(func(ctx context.Context) { v.runIntrospection(ctx, token, call) }) {
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

// runIntrospection makes call, once a slot is free, and shares its answer.
func (v *Verifier) runIntrospection(ctx context.Context, token string, call *introspection) {
	in := v.intro
	defer func() {
		in.mu.Lock()
		delete(in.calls, token)
		if call.err == nil {
			if len(in.answers) >= maxIntrospectionAnswers {
				in.forget(v.now())
			}
			in.answers[token] = introspectionAnswer{active: call.active, until: v.now().Add(introspectionTTL)}
		}
		in.mu.Unlock()
		close(call.done)
	}()
	ctx, cancel := context.WithTimeout(ctx, introspectionTimeout)
	defer cancel()
	select {
	case in.slots <- struct{}{}:
		defer func() { <-in.slots }()
	case <-ctx.Done():
		call.err = fmt.Errorf("waiting for an introspection slot: %w", ctx.Err())
		return
	}
	v.introspections.Add(1)
	call.active, call.err = v.introspect(ctx, token)
}

// forget drops the expired answers, or all of them if none has expired
// (junk tokens must not grow the map); with mu held.
func (in *introspections) forget(now time.Time) {
	for t, a := range in.answers {
		if !now.Before(a.until) {
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
