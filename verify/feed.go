package verify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// feedSilence is how long the feed may say nothing before the connection
// is taken for dead, until authd has announced its heartbeat interval (in
// the "synced" event; then silenceBeats of them). It also bounds the wait
// for a connection's response headers. A variable for the tests of it
// only.
var feedSilence = 45 * time.Second

// feedLossGrace is how long after the feed is lost tokens are still
// checked against the revocations known so far, whatever the Policy: most
// losses are a reconnection (authd restarting, a proxy's idle timeout)
// that catches up within it, and falling back at once would send every
// token to introspection (or refuse them all) for nothing.
const feedLossGrace = 2 * time.Second

const (
	// silenceBeats is how many announced heartbeat intervals may pass
	// without a word from the feed.
	silenceBeats = 3
	// minSilence and maxSilence bound the silence limit an announced
	// heartbeat sets.
	minSilence = 10 * time.Millisecond
	maxSilence = 10 * time.Minute
)

const (
	// Reconnection backoff: from minBackoff doubling to maxBackoff, with
	// jitter, reset once a connection has caught up.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// maxFeedLine bounds one line of the event stream.
	maxFeedLine = 64 << 10
	// maxEventID bounds an event's SSE id (sent back as Last-Event-ID).
	maxEventID = 200
	// maxRevokedID bounds an event's sid or sub (authd's are 36-byte
	// UUIDs), so that MaxRevocations bounds the memory too, not the count
	// alone: a feed's line may hold 64 KiB.
	maxRevokedID = 128
	// forgetAfter keeps an event past its exp, for clock skew with authd.
	forgetAfter = time.Minute
	// maxTokenLife is the longest an access token of authd lives
	// (AUTHD_ACCESS_TOKEN_TTL's bound): an event without an exp, or with
	// one further away, is kept that long.
	maxTokenLife = 24 * time.Hour
	// fullScanPace is how often a full memory of revocations may be
	// scanned for expired ones as events come (besides prune's cadence).
	fullScanPace = time.Second
	// idlePrune is how often a quiet feed's heartbeats prune (pruneIdle).
	idlePrune = time.Minute
	// defaultMaxRevocations is Options.MaxRevocations' default.
	defaultMaxRevocations = 1_000_000
	// resumeGrace is how long the state stays current while the verifier
	// resumes a stream authd ended on purpose.
	resumeGrace = time.Second
	// minStreamLife is how long a stream must have lasted for its clean end
	// to be resumed at once.
	minStreamLife = time.Second
)

// errStreamEnded is a stream that authd closed cleanly, between events.
var errStreamEnded = errors.New("verify: authd ended the revocation stream")

// revocations is what the feed has said: revoked sessions and users.
type revocations struct {
	mu       sync.RWMutex
	sessions map[string]time.Time // sid → when it may be forgotten
	users    map[string]userRevocation
	// max bounds len(sessions)+len(users). A revocation past it is not
	// kept: until fullUntil (Options.Now's clock), when every token it
	// could name has expired, a token issued before doubtBefore (when the
	// last one not kept reached the verifier, or its user event's before
	// if later, plus forgetAfter for authd's clock running ahead: tokens
	// issued later cannot be of its session, nor of its user's revoked
	// ones) is in doubt, and the Policy decides it. earliest is no later than the first time a kept one may
	// be forgotten (zero: none kept yet), so that a full memory is
	// scanned only when the scan can free something, and at most once a
	// second (scanned, wall clock): at the bound, with revocations
	// expiring as fast as new ones come, a scan per event would slow the
	// feed, which delays every revocation.
	max         int
	earliest    time.Time
	scanned     time.Time
	pruned      time.Time // the last prune (wall clock), for pruneIdle
	fullUntil   time.Time
	doubtBefore time.Time
	fulls       int64 // times the memory filled, for the epoch
	dropped     int64 // revocations not kept, for Stats
	lastID      int64
	resumeFrom  string        // the last event's SSE id, sent back as Last-Event-ID
	healthy     bool          // connected and caught up
	downSince   time.Time     // with !healthy: when the feed was lost (wall clock; zero: never caught up)
	silence     time.Duration // how long the feed may say nothing before it is taken for dead
	lastMessage time.Time     // anything from the feed, heartbeats included
	reconnects  int64
	syncs       int64 // catch-ups so far, for keepHealthyFor
	lastErr     error // why the last connection failed, for New's error
}

type userRevocation struct {
	before time.Time // tokens issued before it are revoked
	forget time.Time
}

func newRevocations(max int) *revocations {
	return &revocations{sessions: map[string]time.Time{}, users: map[string]userRevocation{}, silence: feedSilence, max: max}
}

// revoked reports whether the feed revoked c's session or its user's tokens
// of that age. A user event's before is in whole seconds, like iat: a token
// with iat in the second of the revocation is caught by its session's event.
func (r *revocations) revoked(c *Claims) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.sessions[c.SessionID]; ok {
		return true
	}
	u, ok := r.users[c.Subject]
	return ok && c.IssuedAt.Before(u.before)
}

// state is whether the feed is current, since when it is not, its epoch
// at now (Options.Now's clock), which tells one outage from the next (for
// the introspection answers and breaker, which serve one outage), and,
// while revocations that can still matter were not kept (more than max),
// doubtBefore (zero otherwise; inDoubt). The epoch counts catch-ups, and
// each start and end of such a time. One read lock for all: Verify asks
// for each token.
func (r *revocations) state(now time.Time) (healthy bool, downSince time.Time, epoch int64, doubtBefore time.Time) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	epoch = r.syncs + 2*r.fulls
	if now.Before(r.fullUntil) {
		epoch--
		doubtBefore = r.doubtBefore
	}
	return r.healthy, r.downSince, epoch, doubtBefore
}

// inDoubt reports whether a revocation not kept may name c, given state's
// doubtBefore: then only introspection can tell, whatever the feed's state.
func inDoubt(c *Claims, doubtBefore time.Time) bool {
	return !doubtBefore.IsZero() && !c.IssuedAt.After(doubtBefore)
}

// silenceLimit is how long the feed may say nothing, response headers
// included, before the connection is dropped.
func (r *revocations) silenceLimit() time.Duration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.silence
}

// announced takes the heartbeat interval authd announced (0: none, the
// default limit).
func (r *revocations) announced(heartbeat time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.silence = feedSilence
	if heartbeat > 0 {
		r.silence = min(max(silenceBeats*heartbeat, minSilence), maxSilence)
	}
}

func (r *revocations) stats(now time.Time) Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st := Stats{FeedConnected: r.healthy, LastEventID: r.lastID, Reconnects: r.reconnects,
		Revoked: len(r.sessions) + len(r.users), RevocationsFull: now.Before(r.fullUntil), RevocationsDropped: r.dropped}
	if !r.lastMessage.IsZero() {
		st.FeedLag = now.Sub(r.lastMessage)
	}
	return st
}

// feedEvent is one event of authd's feed.
type feedEvent struct {
	ID     int64  `json:"id"`
	SID    string `json:"sid"`
	Sub    string `json:"sub"`
	Before int64  `json:"before"`
	Exp    int64  `json:"exp"`
}

// apply records e, whose SSE id was id. Applying an event again changes
// nothing, so authd may resend (it starts over when it does not know the
// client's position: a restored database). It reports whether e was a
// revocation that could not be kept (more than max) while all were. The
// feed's one goroutine is its only caller, as of prune.
func (r *revocations) apply(e feedEvent, id string, now time.Time) (filled bool) {
	longest := now.Add(maxTokenLife + forgetAfter)
	forget := longest // no exp, or a later one than any token's
	if e.Exp > 0 && e.Exp < longest.Unix() {
		forget = time.Unix(e.Exp, 0).Add(forgetAfter)
	}
	r.mu.Lock()
	if r.full(e) && now.After(r.earliest) && time.Since(r.scanned) >= fullScanPace {
		// Something kept may have expired: forget it first, scanning
		// under the read lock (prune) rather than this one.
		r.scanned = time.Now()
		r.mu.Unlock()
		r.prune(now)
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if r.full(e) {
		r.advance(e, id)
		if now.After(forget) { // names no token that can be unexpired
			return false
		}
		if filled = !now.Before(r.fullUntil); filled {
			r.fulls++
		}
		r.fullUntil = later(r.fullUntil, forget)
		// A user event revokes the tokens issued before its before, which
		// authd's clock dates and may set ahead of this one's: the later
		// of the two, with the skew the feed allows (forgetAfter).
		r.doubtBefore = later(r.doubtBefore, later(now, time.Unix(min(max(e.Before, 0), longest.Unix()), 0)).Add(forgetAfter))
		r.dropped++
		return filled
	}
	if r.earliest.IsZero() || forget.Before(r.earliest) {
		r.earliest = forget
	}
	switch {
	case e.SID != "":
		if forget.After(r.sessions[e.SID]) {
			r.sessions[e.SID] = forget
		}
	case e.Sub != "":
		u := r.users[e.Sub]
		before := time.Unix(e.Before, 0)
		if e.Before < 0 || e.Before > longest.Unix() { // absurd (time.Unix would wrap): every token of the user
			before = longest
		}
		if before.After(u.before) {
			u.before = before
		}
		u.forget = later(u.forget, forget)
		r.users[e.Sub] = u
	}
	r.advance(e, id)
	return false
}

// advance records e, whose SSE id was id, as the last event applied. In
// order within a stream; after a database reset authd starts over. The SSE
// id names the event for authd (its id and a digest of it), so that authd
// can tell a position in a restored table; an authd that sends none gets
// the number back.
func (r *revocations) advance(e feedEvent, id string) {
	r.lastID, r.resumeFrom = e.ID, id
	if id == "" {
		r.resumeFrom = strconv.FormatInt(e.ID, 10)
	}
}

// full reports whether e names a session or user not kept while max are;
// with mu held.
func (r *revocations) full(e feedEvent) bool {
	if len(r.sessions)+len(r.users) < r.max {
		return false
	}
	if e.SID != "" {
		_, known := r.sessions[e.SID]
		return !known
	}
	_, known := r.users[e.Sub]
	return !known
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// prune forgets what can no longer affect an unexpired token. It looks
// for them under the read lock, which every Verify shares, and takes the
// write lock only to delete what it found, so that a map grown large by a
// burst of revocations does not stall every request for a whole scan. The
// feed's one goroutine is its only caller, as of apply: nothing changes
// the maps between the two locks.
func (r *revocations) prune(now time.Time) {
	r.mu.RLock()
	sessions, sEarliest, freshSessions := sweep(r.sessions, now, func(f time.Time) time.Time { return f })
	users, uEarliest, freshUsers := sweep(r.users, now, func(u userRevocation) time.Time { return u.forget })
	r.mu.RUnlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pruned = time.Now()
	r.earliest = sEarliest
	if r.earliest.IsZero() || !uEarliest.IsZero() && uEarliest.Before(r.earliest) {
		r.earliest = uEarliest
	}
	r.sessions = without(r.sessions, sessions, freshSessions)
	r.users = without(r.users, users, freshUsers)
}

// pruneIdle prunes when the last prune is idlePrune old (wall clock), so
// that a quiet feed's heartbeats keep the memory, and Stats.Revoked, to the
// revocations that can still matter. The feed's goroutine calls it.
func (r *revocations) pruneIdle(now time.Time) {
	r.mu.RLock()
	due := time.Since(r.pruned) >= idlePrune
	r.mu.RUnlock()
	if due {
		r.prune(now)
	}
}

// sweep is prune's look at m: the ids expired at now, the earliest time
// one of the others may be forgotten (zero: none left), and, when they are
// under a quarter of a large m, a fresh map of them, since a Go map never
// gives back the memory a burst made it take.
func sweep[V any](m map[string]V, now time.Time, forgetAt func(V) time.Time) (gone []string, earliest time.Time,
	fresh map[string]V) {
	for id, v := range m {
		switch f := forgetAt(v); {
		case now.After(f):
			gone = append(gone, id)
		case earliest.IsZero() || f.Before(earliest):
			earliest = f
		}
	}
	if left := len(m) - len(gone); len(m) >= 4096 && left < len(m)/4 {
		fresh = make(map[string]V, left)
		for id, v := range m {
			if !now.After(forgetAt(v)) {
				fresh[id] = v
			}
		}
	}
	return gone, earliest, fresh
}

// without is m without the ids gone: fresh when sweep made one.
func without[V any](m map[string]V, gone []string, fresh map[string]V) map[string]V {
	if fresh != nil {
		return fresh
	}
	for _, id := range gone {
		delete(m, id)
	}
	return m
}

// connected records that the stream caught up (healthy) or was lost.
func (r *revocations) setHealthy(ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.healthy && !ok {
		r.downSince = time.Now()
	}
	if ok {
		r.syncs++
	}
	r.healthy = ok
}

// keepHealthyFor leaves the state healthy for d while a stream resumes:
// unless it has caught up again by then, it becomes lost from now.
func (r *revocations) keepHealthyFor(d time.Duration) {
	r.mu.RLock()
	syncs := r.syncs
	r.mu.RUnlock()
	time.AfterFunc(d, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.syncs == syncs && r.healthy {
			r.healthy, r.downSince = false, time.Now()
		}
	})
}

func (r *revocations) heard(now time.Time) {
	r.mu.Lock()
	r.lastMessage = now
	r.mu.Unlock()
}

// errRefused marks a feed answer that retrying will not change (a wrong
// service token or URL), which New reports at once.
type errRefused struct{ status string }

func (e errRefused) Error() string { return "verify: the revocation feed answered " + e.status }

// follow reads the feed until ctx ends, reconnecting with backoff and
// jitter and resuming after the last event seen. The first connection's
// outcome goes to first: nil once it has caught up, or its error.
func (v *Verifier) follow(ctx context.Context, first chan<- error) {
	backoff := minBackoff
	for attempt := 0; ; attempt++ {
		caughtUp, started := false, time.Now()
		err := v.stream(ctx, func() {
			caughtUp = true
			if first != nil {
				first <- nil
				first = nil
			}
		})
		if ctx.Err() != nil {
			v.revs.setHealthy(false)
			return
		}
		if caughtUp && errors.Is(err, errStreamEnded) && time.Since(started) >= minStreamLife {
			// authd ended the stream on purpose (its lifetime): resume at
			// once. The state counts as current for resumeGrace, as long as
			// an event takes to arrive anyway, so that the hourly
			// reconnection is no gap; if the resumption has not caught up
			// by then, it is one, from the end. A stream that ended
			// sooner than minStreamLife goes through the backoff, so that
			// a misbehaving server cannot make this loop spin.
			v.revs.keepHealthyFor(resumeGrace)
			v.revs.mu.Lock()
			v.revs.reconnects++
			v.revs.mu.Unlock()
			backoff = minBackoff
			continue
		}
		v.revs.setHealthy(false)
		if first != nil && errors.As(err, new(errRefused)) {
			// The first connection failed for good: New reports it. Any
			// other failure is retried until New's context ends.
			first <- err
			return
		}
		v.revs.mu.Lock()
		v.revs.lastErr = err
		v.revs.mu.Unlock()
		v.logger.Warn("verify: revocation feed lost; reconnecting", "err", err, "in", backoff)
		if caughtUp {
			backoff = minBackoff
		}
		jittered := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(jittered):
		}
		backoff = min(2*backoff, maxBackoff)
		v.revs.mu.Lock()
		v.revs.reconnects++
		v.revs.mu.Unlock()
	}
}

// stream follows one connection to the feed, resuming after the last event
// seen; caughtUp is called when authd says the backlog is sent.
func (v *Verifier) stream(ctx context.Context, caughtUp func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.opts.RevocationsURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+v.opts.ServiceToken)
	v.revs.mu.RLock()
	last := v.revs.resumeFrom
	v.revs.mu.RUnlock()
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	// The stream lives long: the client's overall timeout must not apply.
	// A connection that goes silent is dead, from the request on: one whose
	// response headers never come is cancelled as well.
	// Each connection may reach another authd (a rolling upgrade, a
	// rollback): the heartbeat an earlier one announced is not this one's,
	// which announces its own, or none, in its "synced". Until its answer
	// comes the earlier limit holds (a hung instance is left as soon as
	// before); from the answer to "synced", the default.
	limit := v.revs.silenceLimit()
	silence := time.AfterFunc(limit, cancel)
	defer silence.Stop()
	silent := func(err error) error {
		if ctx.Err() != nil && !silence.Stop() {
			return fmt.Errorf("verify: the revocation feed was silent for %s", limit)
		}
		return err
	}
	client := &http.Client{Transport: v.client.Transport, CheckRedirect: refuseRedirect}
	resp, err := client.Do(req)
	if number, _, marked := strings.Cut(last, "."); err == nil && marked && resp.StatusCode == http.StatusBadRequest {
		// An authd older than the marks (an instance not yet upgraded, or
		// all of them after a rollback) refuses an id that is not a plain
		// number, and would refuse it on every reconnection: ask again
		// with the number alone, as such an authd wrote it. Its events
		// carry plain ids, so later reconnections send a number anyway;
		// the next marked id an upgraded instance sends is tried again.
		resp.Body.Close()
		req = req.Clone(ctx)
		req.Header.Set("Last-Event-ID", number)
		resp, err = client.Do(req)
	}
	if err != nil {
		return silent(err)
	}
	defer resp.Body.Close()
	switch {
	case refusal(resp.StatusCode):
		return errRefused{resp.Status}
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("verify: the revocation feed answered %s", resp.Status)
	case !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
		return errRefused{"a " + resp.Header.Get("Content-Type") + " body, not an event stream"}
	}
	v.revs.announced(0)
	limit = v.revs.silenceLimit()
	silence.Reset(limit)
	body := bufio.NewReaderSize(resp.Body, 4096)
	var event, data, id string
	for {
		line, err := readLine(body)
		if err == io.EOF && event == "" && data == "" {
			return errStreamEnded
		}
		if err != nil {
			return silent(err)
		}
		v.revs.heard(v.now())
		switch {
		case line == "":
			if err := v.dispatch(event, data, id, caughtUp); err != nil {
				return err
			}
			event, data, id = "", "", ""
		case strings.HasPrefix(line, ":"): // a comment: heartbeat
			v.revs.pruneIdle(v.now())
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				event = value
			case "id":
				id = value
			case "data":
				if data != "" {
					data += "\n"
				}
				data += value
				if len(data) > maxFeedLine {
					return fmt.Errorf("verify: a revocation event over %d bytes", maxFeedLine)
				}
			}
		}
		limit = v.revs.silenceLimit() // "synced" may have announced the heartbeat
		silence.Reset(limit)
	}
}

// dispatch applies one complete event.
func (v *Verifier) dispatch(event, data, id string, caughtUp func()) error {
	switch event {
	case "", "message":
		if data == "" {
			return nil
		}
		var e feedEvent
		if err := json.Unmarshal([]byte(data), &e); err != nil || e.ID <= 0 || (e.SID == "") == (e.Sub == "") ||
			len(e.SID) > maxRevokedID || len(e.Sub) > maxRevokedID || len(id) > maxEventID || strings.ContainsAny(id, "\x00\r\n") {
			return fmt.Errorf("verify: a malformed revocation event")
		}
		now := v.now()
		if v.revs.apply(e, id, now) {
			v.logger.Warn("verify: more revocations than Options.MaxRevocations; tokens are checked by the Policy "+
				"until those not kept have expired", "max", v.revs.max)
		}
		if e.ID%256 == 0 {
			v.revs.prune(now)
		}
	case "synced":
		var s struct {
			HeartbeatMS int64 `json:"heartbeat_ms"`
		}
		if json.Unmarshal([]byte(data), &s) == nil && s.HeartbeatMS > 0 && s.HeartbeatMS < int64(maxSilence/time.Millisecond) {
			v.revs.announced(time.Duration(s.HeartbeatMS) * time.Millisecond)
		}
		v.revs.prune(v.now())
		v.revs.setHealthy(true)
		caughtUp()
	}
	return nil
}

// readLine reads one line (LF or CRLF endings), at most maxFeedLine.
func readLine(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		frag, err := r.ReadSlice('\n')
		b.Write(frag)
		if b.Len() > maxFeedLine {
			return "", fmt.Errorf("verify: a revocation feed line over %d bytes", maxFeedLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && b.Len() > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		return strings.TrimRight(b.String(), "\r\n"), nil
	}
}
