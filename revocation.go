package authd

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Revocation is a change that makes access tokens unusable before they
// expire: sessions ended, or a user blocked (locked or deleted) or
// unblocked. Instances exchange them (on PostgreSQL through LISTEN/NOTIFY) so
// that a revocation reaches every instance within a second; the tables stay
// the truth.
type Revocation struct {
	SessionIDs []uuid.UUID `json:"sessions,omitempty"`
	At         time.Time   `json:"at"`
	UserID     uuid.UUID   `json:"user,omitempty"`
	// BlockUntil blocks UserID's tokens until then; the zero time with Block
	// set blocks them indefinitely. Unblock lifts a block.
	Block      bool      `json:"block,omitempty"`
	BlockUntil time.Time `json:"block_until,omitzero"`
	Unblock    bool      `json:"unblock,omitempty"`
}

// RevocationFeed delivers the revocations committed by every instance.
type RevocationFeed interface {
	// Listen calls apply for each revocation, and resync after every
	// (re)connection, when notifications may have been missed, until ctx ends.
	Listen(ctx context.Context, apply func(Revocation), resync func(context.Context)) error
}

// RevocationSet is the in-memory view of revoked sessions and blocked users
// that token checks read, so that no check needs a database round trip.
// Safe for concurrent use.
type RevocationSet struct {
	keep time.Duration // how long a revoked session must be remembered: the access-token lifetime

	mu       sync.RWMutex
	sessions map[uuid.UUID]time.Time // revoked session → when it may be forgotten
	users    map[uuid.UUID]time.Time // blocked user → until (zero: indefinitely)
}

// NewRevocationSet returns an empty set that remembers a revoked session for
// keep (the access-token lifetime: no token of it is valid after that).
func NewRevocationSet(keep time.Duration) *RevocationSet {
	return &RevocationSet{keep: keep, sessions: map[uuid.UUID]time.Time{}, users: map[uuid.UUID]time.Time{}}
}

// Apply records a revocation.
func (r *RevocationSet) Apply(rev Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply(rev)
}

func (r *RevocationSet) apply(rev Revocation) {
	forget := rev.At.Add(r.keep)
	for _, id := range rev.SessionIDs {
		if forget.After(r.sessions[id]) {
			r.sessions[id] = forget
		}
	}
	switch {
	case rev.Unblock:
		delete(r.users, rev.UserID)
	case rev.Block:
		r.users[rev.UserID] = rev.BlockUntil
	}
}

// Replace swaps the whole set for revs, as read from the tables.
func (r *RevocationSet) Replace(revs []Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = map[uuid.UUID]time.Time{}
	r.users = map[uuid.UUID]time.Time{}
	for _, rev := range revs {
		r.apply(rev)
	}
}

// Revoked reports whether a token of session sid held by user uid must be
// refused at now.
func (r *RevocationSet) Revoked(sid, uid uuid.UUID, now time.Time) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.sessions[sid]; ok {
		return true
	}
	until, ok := r.users[uid]
	return ok && (until.IsZero() || now.Before(until))
}

// Prune forgets what can no longer matter at now, keeping the set small.
func (r *RevocationSet) Prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, forget := range r.sessions {
		if !now.Before(forget) {
			delete(r.sessions, id)
		}
	}
	for id, until := range r.users {
		if !until.IsZero() && !now.Before(until) {
			delete(r.users, id)
		}
	}
}

// Len returns how many sessions and users the set holds.
func (r *RevocationSet) Len() (sessions, users int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.sessions), len(r.users)
}

// LoadRevocations fills the revocation set from the store: the sessions
// revoked within the access-token lifetime and the locked users.
func (s *Service) LoadRevocations(ctx context.Context) error {
	now := s.now()
	revs, err := s.store.Revocations(ctx, now.Add(-s.cfg.AccessTokenTTL), now)
	if err != nil {
		return err
	}
	s.revocations.Replace(revs)
	return nil
}

// txn is a flow's transaction: its queries, and what to do once it has
// committed — apply revocations here, wake the mail sender, count events.
type txn struct {
	Queries
	revocations []Revocation
	events      []*SecurityLog
	mailed      bool
}

// revoke publishes rev to every instance with the transaction; this instance
// applies it once the transaction has committed.
func (t *txn) revoke(ctx context.Context, rev Revocation) error {
	if err := t.PublishRevocation(ctx, rev); err != nil {
		return err
	}
	t.revocations = append(t.revocations, rev)
	return nil
}

// CreateSecurityLog writes l and remembers it for the metrics.
func (t *txn) CreateSecurityLog(ctx context.Context, l *SecurityLog) error {
	if err := t.Queries.CreateSecurityLog(ctx, l); err != nil {
		return err
	}
	t.events = append(t.events, l)
	return nil
}

// inTx runs fn in one transaction and, after it commits, applies its
// revocations, wakes the mail sender and reports its events.
func (s *Service) inTx(ctx context.Context, fn func(tx *txn) error) error {
	t := &txn{}
	err := s.store.InTx(ctx, func(q Queries) error {
		*t = txn{Queries: q}
		return fn(t)
	})
	if err != nil {
		return err
	}
	for _, rev := range t.revocations {
		s.revocations.Apply(rev)
	}
	if t.mailed {
		s.wakeSender()
	}
	for _, l := range t.events {
		s.observeEvent(l)
	}
	return nil
}

// logEvent writes a security-log row outside a flow's transaction (for
// failures that change nothing else).
func (s *Service) logEvent(ctx context.Context, l *SecurityLog) error {
	if err := s.store.CreateSecurityLog(ctx, l); err != nil {
		return err
	}
	s.observeEvent(l)
	return nil
}

func (s *Service) observeEvent(l *SecurityLog) {
	if s.hooks.Event != nil {
		s.hooks.Event(l.EventType, l.Result)
	}
}
