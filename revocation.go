package authd

import (
	"context"
	"sync"
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
	keep time.Duration // how long a revoked session must be remembered: the access-token lifetime

	mu       sync.RWMutex
	sessions map[uuid.UUID]time.Time // revoked session → when it may be forgotten
}

// NewRevocationSet returns an empty set that remembers a revoked session for
// keep (the access-token lifetime: no token of it is valid after that).
func NewRevocationSet(keep time.Duration) *RevocationSet {
	return &RevocationSet{keep: keep, sessions: map[uuid.UUID]time.Time{}}
}

// Apply records a revocation.
func (r *RevocationSet) Apply(rev Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	forget := rev.At.Add(r.keep)
	for _, id := range rev.SessionIDs {
		if forget.After(r.sessions[id]) {
			r.sessions[id] = forget
		}
	}
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

// LoadRevocations merges into the revocation set the sessions revoked
// within the access-token lifetime, as the store has them.
func (s *Service) LoadRevocations(ctx context.Context) error {
	revs, err := s.store.RevokedSessions(ctx, s.now().Add(-s.cfg.AccessTokenTTL))
	if err != nil {
		return err
	}
	for _, rev := range revs {
		s.revocations.Apply(rev)
	}
	return nil
}
