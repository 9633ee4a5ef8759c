package authd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Revocation is a change that makes access tokens unusable before they
// expire: sessions ended. Instances exchange them (on PostgreSQL through
// LISTEN/NOTIFY) so that a revocation reaches every instance within a
// second; the sessions table stays the truth.
//
// Every way an account stops accepting tokens — logout, an administrator's
// lock, erasure — ends its sessions, so sessions are all the set needs to
// know. A brute-force lock ends none (SPEC 6.7).
type Revocation struct {
	SessionIDs []uuid.UUID `json:"sessions"`
	At         time.Time   `json:"at"`

	// The rest is for the revocation feed's table (RevocationEvent), not
	// for other instances.

	// UserID is set when every session of the user ended at once: the feed
	// then also tells resource servers to refuse the user's tokens issued
	// before At.
	UserID uuid.UUID `json:"-"`
	// Reason names the flow that revoked (for operators).
	Reason string `json:"-"`
	// Until is when the last access token the revocation can affect
	// expires: At + the longest access-token lifetime + the skew leeway
	// (revocationLifetime).
	Until time.Time `json:"-"`
}

// RevocationKind says what a RevocationEvent revokes.
type RevocationKind string

// Kinds of revocation event.
const (
	RevokedSession RevocationKind = "session" // every token of the session Subject
	RevokedUser    RevocationKind = "user"    // every token of the user Subject issued before CreatedAt
)

// RevocationEvent is one row of the revocation feed that resource servers
// follow (GET /v1/auth/revocations). IDs grow in commit order, so a reader
// that has seen ID n never later meets a smaller one: resuming after n
// loses nothing.
type RevocationEvent struct {
	ID        int64
	Kind      RevocationKind
	Subject   uuid.UUID
	Reason    string
	ExpiresAt time.Time // when the last token it can affect expires
	CreatedAt time.Time
}

// Events returns the feed's rows for rev: one per session, and one for the
// user when UserID is set.
func (rev Revocation) Events() []RevocationEvent {
	out := make([]RevocationEvent, 0, len(rev.SessionIDs)+1)
	for _, id := range rev.SessionIDs {
		out = append(out, RevocationEvent{Kind: RevokedSession, Subject: id, Reason: rev.Reason,
			ExpiresAt: rev.Until, CreatedAt: rev.At})
	}
	if rev.UserID != uuid.Nil {
		out = append(out, RevocationEvent{Kind: RevokedUser, Subject: rev.UserID, Reason: rev.Reason,
			ExpiresAt: rev.Until, CreatedAt: rev.At})
	}
	return out
}

// RevocationFeed delivers the revocations committed by every instance.
type RevocationFeed interface {
	// Listen calls apply for each revocation, and resync after every
	// (re)connection, when notifications may have been missed, until ctx ends.
	Listen(ctx context.Context, apply func(Revocation), resync func(context.Context)) error
}

// RevocationSet is the in-memory view of revoked sessions that token checks
// read, so that no check needs a database round trip. A session, once
// revoked, stays revoked, so the set only ever grows between prunes: a reload
// merges what the table says into it and can never undo a revocation that
// arrived while the reload was reading. Safe for concurrent use.
type RevocationSet struct {
	keep time.Duration // how long a revoked session must be remembered: the longest access-token lifetime

	mu       sync.RWMutex
	sessions map[uuid.UUID]time.Time // revoked session → when it may be forgotten
	changed  chan struct{}           // closed (and replaced) when a session is added
}

// NewRevocationSet returns an empty set that remembers a revoked session for
// keep: the longest lifetime any instance may have given its tokens
// (revocationLifetime), not this instance's, since instances configured
// with a longer one (or this one before a restart) may have issued them.
func NewRevocationSet(keep time.Duration) *RevocationSet {
	return &RevocationSet{keep: keep, sessions: map[uuid.UUID]time.Time{}, changed: make(chan struct{})}
}

// Apply records a revocation.
func (r *RevocationSet) Apply(rev Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	forget := rev.At.Add(r.keep)
	added := false
	for _, id := range rev.SessionIDs {
		if _, known := r.sessions[id]; !known {
			added = true
		}
		if forget.After(r.sessions[id]) {
			r.sessions[id] = forget
		}
	}
	if added {
		close(r.changed)
		r.changed = make(chan struct{})
	}
}

// Changed returns a channel closed once a session not yet in the set is
// added: by this instance's own commit, another instance's notification or
// a reload. The revocation feed waits on it; take it before reading the
// events, so that nothing committed in between goes unnoticed.
func (r *RevocationSet) Changed() <-chan struct{} {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.changed
}

// Revoked reports whether tokens of session sid must be refused.
func (r *RevocationSet) Revoked(sid uuid.UUID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.sessions[sid]
	return ok
}

// Prune forgets the sessions whose tokens have all expired at now, keeping
// the set small.
func (r *RevocationSet) Prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, forget := range r.sessions {
		if !now.Before(forget) {
			delete(r.sessions, id)
		}
	}
}

// Len returns how many sessions the set holds.
func (r *RevocationSet) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.sessions)
}

// LoadRevocations merges into the revocation set every session revoked
// within revocationLifetime, as the sessions table has them, and notes
// where the revocation feed's table stands, for CatchUpRevocations.
// Start-up calls it.
func (s *Service) LoadRevocations(ctx context.Context) error {
	if err := s.lockRevocations(ctx); err != nil {
		return err
	}
	defer s.unlockRevocations()
	return s.loadRevocations(ctx)
}

// loadRevocations is LoadRevocations with the set locked.
func (s *Service) loadRevocations(ctx context.Context) error {
	began := time.Since(s.rev.epoch)
	// The feed's position first: a revocation committed after it is read
	// is caught up from the feed, one committed before it is in the table.
	last, err := s.store.LastRevocationEventID(ctx)
	if err != nil {
		return err
	}
	revs, err := s.store.RevokedSessions(ctx, s.now().Add(-revocationLifetime(s.cfg.AccessTokenTTL)))
	if err != nil {
		return err
	}
	for _, rev := range revs {
		s.revocations.Apply(rev)
	}
	s.rev.cursor, s.rev.loaded = last, true
	s.caughtUp(began)
	return nil
}

// caughtUp notes that every revocation committed before began (time since
// revEpoch) is in the set.
func (s *Service) caughtUp(began time.Duration) {
	s.rev.caughtUp.Store(max(int64(began), 1))
}

// revocationsStale reports whether the set may lack revocations committed
// longer than RevocationMaxLag ago: no load or catch-up has succeeded
// since it began that long ago.
func (s *Service) revocationsStale() bool {
	lag := s.cfg.RevocationMaxLag
	if lag <= 0 {
		return false
	}
	at := s.rev.caughtUp.Load()
	return at == 0 || time.Since(s.rev.epoch)-time.Duration(at) > lag
}

// CatchUpRevocations merges into the revocation set the sessions revoked
// since the last load or catch-up, read from the revocation feed's table
// by id: ids grow in commit order, so nothing committed meanwhile is
// missed, whatever the instances' clocks say or however long a
// transaction took between stamping and committing. The server's
// half-second catch-up (on every store: notifications can be lost) and the
// resynchronisation of a reconnected listener call it. It loads in full
// the first time, and when the table's head is behind the last event
// merged (a database restored under the running server), since the ids
// to come would otherwise be skipped.
func (s *Service) CatchUpRevocations(ctx context.Context) error {
	if err := s.lockRevocations(ctx); err != nil {
		return err
	}
	defer s.unlockRevocations()
	return s.catchUp(ctx)
}

// revocationSync is how an instance keeps its revocation set current.
type revocationSync struct {
	epoch time.Time // the origin of the durations below (monotonic)
	// load is held (one slot) by the one load or catch-up of the set at a
	// time, which alone reads and writes loaded and cursor.
	load   chan struct{}
	loaded bool  // LoadRevocations has run
	cursor int64 // the last revocation event merged into the set
	// caughtUp is when the last load or catch-up that succeeded began, as
	// time since epoch; 0: none yet.
	caughtUp atomic.Int64
	// flight is the catch-up stale requests share (catchUpStale), nil when
	// none runs; failed is when the last one failed (time since epoch; 0:
	// it did not). Both under flightMu.
	flightMu sync.Mutex
	flight   *catchUpFlight
	failed   int64
}

// lockRevocations takes the right to load or catch up the set, waiting
// at most until ctx ends; unlockRevocations gives it back.
func (s *Service) lockRevocations(ctx context.Context) error {
	select {
	case s.rev.load <- struct{}{}:
		if err := ctx.Err(); err != nil { // both were ready: the slot is no use now
			<-s.rev.load
			return err
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) unlockRevocations() { <-s.rev.load }

// catchUpStale is Authenticate's own catch-up of a stale set, so that
// the first requests once the database answers again need not wait for
// the server's next one. The requests that find the set stale share one
// attempt (revFlight), of at most a second, and take its result; after a
// failure, they answer at once for a quarter of a second rather than ask
// a database that is down or recovering again. It reports whether the set
// is current.
func (s *Service) catchUpStale(ctx context.Context) bool {
	s.rev.flightMu.Lock()
	if failed := s.rev.failed; failed != 0 && time.Since(s.rev.epoch)-time.Duration(failed) < staleRetryPause {
		s.rev.flightMu.Unlock()
		return false
	}
	f := s.rev.flight
	if f == nil {
		f = &catchUpFlight{done: make(chan struct{})}
		s.rev.flight = f
		go s.fly(f)
	}
	s.rev.flightMu.Unlock()
	select {
	case <-f.done:
		return f.err == nil
	case <-ctx.Done():
		return false
	}
}

// staleRetryPause is how long after a failed catch-up of a stale set the
// requests answer unavailable without another.
const staleRetryPause = 250 * time.Millisecond

// catchUpFlight is one catch-up that stale requests share: err is set
// before done closes.
type catchUpFlight struct {
	done chan struct{}
	err  error
}

// fly runs f: a catch-up of at most a second (one running already is
// waited for within it), independent of the request that started it.
func (s *Service) fly(f *catchUpFlight) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if f.err = s.lockRevocations(ctx); f.err == nil {
		if s.revocationsStale() {
			f.err = s.catchUp(ctx)
		}
		s.unlockRevocations()
	}
	s.rev.flightMu.Lock()
	s.rev.flight, s.rev.failed = nil, 0
	if f.err != nil {
		s.rev.failed = max(int64(time.Since(s.rev.epoch)), 1)
	}
	s.rev.flightMu.Unlock()
	close(f.done)
}

// catchUp is CatchUpRevocations with the set locked.
func (s *Service) catchUp(ctx context.Context) error {
	if !s.rev.loaded {
		return s.loadRevocations(ctx)
	}
	began := time.Since(s.rev.epoch)
	for first := true; ; first = false {
		evs, err := s.store.RevocationEvents(ctx, s.rev.cursor, s.now(), RevocationEventsPage)
		if err != nil {
			return err
		}
		if first && len(evs) == 0 {
			last, err := s.store.LastRevocationEventID(ctx)
			if err != nil {
				return err
			}
			if last < s.rev.cursor {
				return s.loadRevocations(ctx)
			}
		}
		for _, e := range evs {
			if e.Kind == RevokedSession {
				s.revocations.Apply(Revocation{At: e.CreatedAt, SessionIDs: []uuid.UUID{e.Subject}})
			}
			s.rev.cursor = e.ID
		}
		if len(evs) < RevocationEventsPage {
			s.caughtUp(began)
			return nil
		}
	}
}

// tokenLeeway is the clock skew between instances that token checks
// tolerate (SPEC 6.3): a token may outlive its revocation's lifetime by it.
const tokenLeeway = 30 * time.Second

// maxAccessTokenTTL is the longest access-token lifetime the configuration
// accepts (token.MaxAccessTokenTTL, which key rotation also assumes).
const maxAccessTokenTTL = 24 * time.Hour

// revocationLifetime is how long a revocation's feed events are served
// (Revocation.Until - At): the longest lifetime any access token can have,
// not the configured one. Resource servers forget an event at its expiry,
// so an event based on the configured lifetime would expire before the
// tokens it revokes when that lifetime is lowered while tokens issued
// under the old one (or by instances not yet restarted) are still valid.
// The price is a day of events in the feed's first snapshot. Clocks must
// agree within tokenLeeway (NTP): a resource server whose clock runs ahead
// forgets events early.
func revocationLifetime(configured time.Duration) time.Duration {
	return max(configured, maxAccessTokenTTL) + tokenLeeway
}

// RevocationEventsPage bounds one read of the revocation feed: a read
// that returns this many may have more after it.
const RevocationEventsPage = 500

// MarkDigits is the length of a Mark: lowercase hex digits.
const MarkDigits = 16

// Mark names event e among the events that may ever carry its id: a
// digest of its row. A client resumes the feed with the id and the mark of
// the last event it saw, so that authd can tell whether that event is
// still in its table — it is not after the table was restored from a
// backup or recreated, where the same ids name other events.
func (e RevocationEvent) Mark() string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d\x00%d",
		e.Kind, e.Subject, e.Reason, e.ExpiresAt.UnixNano(), e.CreatedAt.UnixNano()))
	return hex.EncodeToString(sum[:MarkDigits/2])
}

// ResumeRevocationEvents is RevocationEvents for a client that has seen the
// events up to after, and the position it served from: after itself, or 0
// (everything still live) when after is not an event of this table — the
// client followed a database since restored or recreated, whose ids up to
// after name other events or none yet. Resending is harmless (applying an
// event twice changes nothing); skipping is not. An event deleted by
// retention (the oldest event left is after it) is still a position of
// this table: served from after.
//
// mark is the Mark of event after as the client received it; with it the
// answer is exact. Without it (a client that kept only the id), only an
// empty page asks which ids exist, so a client resuming once the table's
// new events have passed after misses those up to after.
//
// The revocation feed's streams call it for every read, so that a stream
// open across a restore starts over too. Returns EUnavailable.
func (s *Service) ResumeRevocationEvents(ctx context.Context, after int64, mark string) (int64, []RevocationEvent, error) {
	if after == 0 {
		evs, err := s.RevocationEvents(ctx, 0, 0)
		return 0, evs, err
	}
	if mark == "" {
		evs, err := s.RevocationEvents(ctx, after, 0)
		if err != nil || len(evs) > 0 {
			return after, evs, err
		}
		last, err := s.store.LastRevocationEventID(ctx)
		if err != nil || after <= last {
			return after, nil, err
		}
		return s.ResumeRevocationEvents(ctx, 0, "")
	}
	// One read finds the page and whether event after is still there: it
	// comes first, live or not, when it is.
	evs, err := s.store.RevocationEventsFrom(ctx, after, s.now(), RevocationEventsPage+1)
	if err != nil {
		return after, nil, err
	}
	if len(evs) > 0 && evs[0].ID == after {
		if evs[0].Mark() != mark { // the same id, another event: not this table's position
			return s.ResumeRevocationEvents(ctx, 0, "")
		}
		return after, evs[1:], nil
	}
	evs = evs[:min(len(evs), RevocationEventsPage)]
	purged, err := s.revocationEventPurged(ctx, after)
	if err != nil || purged {
		return after, evs, err
	}
	return s.ResumeRevocationEvents(ctx, 0, "")
}

// revocationEventPurged reports whether event after, not in the table, was
// deleted by retention rather than never this table's: the oldest event
// left comes after it. Retention deletes only expired events, so then
// every event up to after is gone and could revoke no valid token any
// more: serving after it loses nothing, and starting over (with a warning
// about a restore) would be wrong. Retention keeps the newest event, the
// table's head (LastRevocationEventID), until it is as old as the security
// log kept: a client past the head of an empty table followed a database
// since recreated (or one quiet that long), and starts over, losing nothing.
func (s *Service) revocationEventPurged(ctx context.Context, after int64) (bool, error) {
	oldest, err := s.store.RevocationEvents(ctx, 0, time.Unix(0, 0), 1)
	if err != nil {
		return false, err
	}
	if len(oldest) > 0 {
		return oldest[0].ID > after, nil
	}
	last, err := s.store.LastRevocationEventID(ctx)
	return err == nil && last >= after, err
}

// RevocationEvents returns, oldest first, at most limit (0: and at most
// RevocationEventsPage) revocation events after the event after whose
// tokens may still be valid now. Returns EUnavailable.
func (s *Service) RevocationEvents(ctx context.Context, after int64, limit int) ([]RevocationEvent, error) {
	if limit <= 0 || limit > RevocationEventsPage {
		limit = RevocationEventsPage
	}
	return s.store.RevocationEvents(ctx, after, s.now(), limit)
}
