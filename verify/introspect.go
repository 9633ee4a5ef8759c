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
	// introspected before it (unless the feed catches up sooner). Every
	// outage has this delay on top of the grace, so it is kept short: a
	// token in use is asked about again every 10 s, still one call per
	// token rather than one per request.
	defaultIntrospectionTTL = 10 * time.Second
	// maxIntrospectionAnswers bounds the answers remembered.
	maxIntrospectionAnswers = 10000
	// introspectionPause is how long after the breaker opens (or a trial
	// fails) no call is made.
	introspectionPause = time.Second
	// breakerThreshold is how many calls in a row must fail for the
	// breaker to open: one failure may be the connection's (a stale
	// keep-alive one, a call that could not be retried), not authd's.
	breakerThreshold = 2
)

// introspectionTimeout bounds a request's wait for its token's answer,
// the wait for a free call slot (a call queued longer has no caller
// left), and, from when it has a slot, the HTTP call itself: time spent
// queued here is not counted against authd. A variable for the tests of
// it only.
var introspectionTimeout = 10 * time.Second

// introspections shares introspection calls: one in flight per token,
// whose answer every caller asking meanwhile, and until the feed has
// caught up (at most ttl), gets; at most cap(slots) in flight in all; and
// none for a moment after calls failed (broken).
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

// breaker remembers that introspection fails, so that while authd cannot
// answer, requests fail at once (ErrUnavailable) rather than each wait up
// to introspectionTimeout for a call of its own. It opens after
// breakerThreshold calls in a row failed; then no call is made for
// introspectionPause, and then one at a time (a trial), the others still
// refused, until a trial succeeds. It is shared by every token: a failure
// is authd's (unreachable, 5xx, a timeout), not the token's.
//
// Its state is of one outage (epoch, the feed's catch-up count): once the
// feed has caught up authd was reachable, and an old failure must not
// refuse the next outage's first tokens. A call's outcome counts only in
// the state it was admitted in (gen): a call admitted before the breaker
// opened cannot close it, nor a trial of the last opening open it again.
type breaker struct {
	epoch    int64     // the feed's catch-up count this state is of
	gen      uint64    // changes whenever the breaker opens or closes, or the epoch does
	failures int       // calls failed in a row; open from breakerThreshold on
	err      error     // the last failure
	until    time.Time // open: no trial before it (wall clock)
	trying   bool      // open: the trial is under way
}

// ticket is an admitted call's: the breaker's gen then, and whether it is
// the trial.
type ticket struct {
	gen   uint64
	trial bool
}

func (b *breaker) open() bool { return b.failures >= breakerThreshold }

// at moves the state to epoch: closed, if the feed has caught up since
// the state was formed.
func (b *breaker) at(epoch int64) {
	if epoch > b.epoch {
		*b = breaker{epoch: epoch, gen: b.gen + 1}
	}
}

// refusal is why no call may start at now in epoch, or nil.
func (b *breaker) refusal(now time.Time, epoch int64) error {
	b.at(epoch)
	if !b.open() || (!b.trying && !now.Before(b.until)) {
		return nil
	}
	// The last failure is told, not wrapped: it is not this caller's (a
	// deadline of its own, say, that errors.Is would find).
	return fmt.Errorf("not asked, as %d calls in a row failed, the last: %v", b.failures, b.err)
}

// admit lets a call start at now in epoch, or says why not.
func (b *breaker) admit(now time.Time, epoch int64) (ticket, error) {
	if err := b.refusal(now, epoch); err != nil {
		return ticket{}, err
	}
	b.trying = b.open()
	return ticket{gen: b.gen, trial: b.trying}, nil
}

// record takes the outcome of t's call at now; err is nil for an answer.
func (b *breaker) record(t ticket, err error, now time.Time) {
	if t.gen != b.gen {
		return // admitted in an earlier state: no say in this one
	}
	b.trying = false // t is the trial, if the breaker is open
	switch {
	case err == nil:
		if b.open() {
			b.gen++
		}
		b.failures, b.err = 0, nil
	default:
		b.failures++
		b.err = err
		if b.open() {
			b.gen++
			b.until = now.Add(introspectionPause)
		}
	}
}

// abandon takes t's call ending without a verdict on authd (the Verifier
// closed).
func (b *breaker) abandon(t ticket) {
	if t.trial && t.gen == b.gen {
		b.trying = false
	}
}

// introspectShared asks introspection about c's token, sharing the call
// and its answer with the other callers asking about the same token while
// the feed has not caught up since epoch. The call belongs to the
// Verifier, not to the first caller: a caller that gives up (ctx, or
// introspectionTimeout) leaves it running for the others, and its answer
// is kept for the requests to come.
func (v *Verifier) introspectShared(ctx context.Context, token string, c *Claims, epoch int64) (bool, error) {
	in := v.intro
	in.mu.Lock()
	if a, ok := in.answers[token]; ok && a.epoch == epoch && v.now().Before(a.until) {
		in.mu.Unlock()
		return a.active, nil
	}
	call, ok := in.calls[token]
	if !ok {
		if err := in.broken.refusal(time.Now(), epoch); err != nil {
			in.mu.Unlock()
			v.refused.Add(1)
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
	wait := time.NewTimer(introspectionTimeout)
	defer wait.Stop()
	select {
	case <-call.done:
		return call.active, call.err
	case <-ctx.Done():
		return false, ctx.Err()
	case <-wait.C:
		return false, fmt.Errorf("no answer within %s: %w", introspectionTimeout, context.DeadlineExceeded)
	}
}

// runIntrospection makes call under the Verifier's context, once a slot is
// free and the breaker allows, and shares its answer (kept until exp at
// the latest).
func (v *Verifier) runIntrospection(vctx context.Context, token string, exp time.Time, epoch int64, call *introspection) {
	in := v.intro
	defer func() {
		_, _, current, _ := v.revs.state(v.now())
		in.mu.Lock()
		delete(in.calls, token)
		if call.err == nil {
			in.keep(token, call.active, exp, epoch, current, v.now())
		}
		in.mu.Unlock()
		close(call.done)
	}()
	if call.err = in.takeSlot(vctx); call.err != nil {
		return
	}
	defer func() { <-in.slots }()
	_, _, current, _ := v.revs.state(v.now())
	in.mu.Lock()
	t, err := in.broken.admit(time.Now(), current)
	in.mu.Unlock()
	if err != nil {
		v.refused.Add(1)
		call.err = err
		return
	}
	v.introspections.Add(1)
	ctx, cancel := context.WithTimeout(vctx, introspectionTimeout)
	call.active, call.err = v.introspect(ctx, token)
	cancel()
	in.mu.Lock()
	defer in.mu.Unlock()
	if vctx.Err() != nil { // the Verifier closed: no verdict on authd
		in.broken.abandon(t)
		return
	}
	in.broken.record(t, call.err, time.Now())
}

// takeSlot waits for a free call slot, at most introspectionTimeout: by
// then every caller has given up. Its failure is no verdict on authd.
func (in *introspections) takeSlot(vctx context.Context) error {
	wait := time.NewTimer(introspectionTimeout)
	defer wait.Stop()
	select {
	case in.slots <- struct{}{}:
		return nil
	case <-vctx.Done():
		return fmt.Errorf("waiting for an introspection slot: %w", vctx.Err())
	case <-wait.C:
		return fmt.Errorf("waiting for an introspection slot: %w", context.DeadlineExceeded)
	}
}

// keep remembers a call's answer for its token, made when the feed had
// caught up epoch times, now that it has current times: an answer of an
// earlier outage is not kept (it would hide that outage's replayed
// revocations, and must not take the room of this one's). With mu held.
func (in *introspections) keep(token string, active bool, exp time.Time, epoch, current int64, now time.Time) {
	if in.ttl <= 0 || epoch != current {
		return
	}
	if len(in.answers) >= maxIntrospectionAnswers {
		in.forget(now, current)
	}
	until := now.Add(in.ttl)
	if exp.Before(until) {
		until = exp
	}
	in.answers[token] = introspectionAnswer{active: active, until: until, epoch: epoch}
}

// forget makes room for answers: it drops those expired or of another
// outage than epoch, then, if that is not enough (junk tokens must not
// grow the map), arbitrary ones, down to maxIntrospectionAnswers less a
// sixteenth, so that the next sweep is that many answers away. The rest of
// the outage's answers stay. With mu held.
func (in *introspections) forget(now time.Time, epoch int64) {
	for t, a := range in.answers {
		if a.epoch != epoch || !now.Before(a.until) {
			delete(in.answers, t)
		}
	}
	for t := range in.answers {
		if len(in.answers) <= maxIntrospectionAnswers-maxIntrospectionAnswers/16 {
			break
		}
		delete(in.answers, t)
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
		return fmt.Errorf("verify: Options.IntrospectionURL %s calls a junk token active: not authd's introspection", shown(v.opts.IntrospectionURL))
	case err == nil:
		return nil
	case errors.As(err, new(introspectionRefused)):
		return fmt.Errorf("verify: Options.IntrospectionURL %s: %w", shown(v.opts.IntrospectionURL), err)
	}
	v.logger.Warn("verify: introspection could not be probed; the fallback may fail while the feed is lost",
		"url", shown(v.opts.IntrospectionURL), "err", err)
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
	// Introspection changes nothing: marked idempotent (a nil
	// Idempotency-Key is not sent), a call on a keep-alive connection
	// that authd closed meanwhile is retried by net/http on a new one,
	// rather than fail, which would count toward the breaker.
	req.Header["Idempotency-Key"] = nil
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
