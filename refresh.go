package authd

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// refreshPerSession bounds refreshes per session and minute (SPEC 6.7), so
// that no client can grow a session's rows without end. Repeats within the
// grace window have a budget of their own of the same size: a client that
// spent the rotations' budget and repeats its token within the window (a
// lost answer) is not told to wait past the window, after which the repeat
// would be reuse and end its session.
const refreshPerSession = 60

// overBudget remembers, on this instance, the refresh tokens (by digest)
// refused for their session's budget, until the budget allows them again
// (or, for a repeat within the grace window, until the window closes): one
// presented again meanwhile is refused at once, without the database. The
// refusal comes after the locking read, which share-locks the user's row
// and waits for the session's; a flood of one token over its budget (a
// thief's, say) held that row without a break, and an administrator's
// lock, a logout-all or a login of the user, which update the row, never
// got it (a probe: a dozen clients sufficed). No reuse hides behind it:
// a token remembered is refused from memory only while a read that locks
// nothing finds it still live, or within its grace window with its child
// unused (overBudgetAgain).
type overBudget struct {
	mu    sync.Mutex
	until map[string]time.Time // digest → when it may be tried again
}

// maxOverBudget bounds the tokens remembered; past it, once the lapsed
// ones are forgotten, a refusal is not remembered (the flood then reaches
// the database, as before).
const maxOverBudget = 10000

// wait is how long the token of digest is still refused at now; 0 when it
// is not remembered.
func (o *overBudget) wait(digest string, now time.Time) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	until, ok := o.until[digest]
	if !ok {
		return 0
	}
	if !now.Before(until) {
		delete(o.until, digest)
		return 0
	}
	return until.Sub(now)
}

// note remembers the token of digest as refused until then.
func (o *overBudget) note(digest string, until, now time.Time) {
	if !now.Before(until) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.until == nil {
		o.until = map[string]time.Time{}
	}
	if len(o.until) >= maxOverBudget {
		for d, u := range o.until {
			if !now.Before(u) {
				delete(o.until, d)
			}
		}
		if len(o.until) >= maxOverBudget {
			return
		}
	}
	o.until[digest] = until
}

// overBudgetAgain refuses, from memory (overBudget) and a read that locks
// nothing, a refresh token this instance refused for its session's budget
// that still would be: live, or repeated within its grace window while its
// child is unused, of a live session of clientID's. Any other case is left
// to refresh's ordinary paths, reuse above all, which no budget may delay
// (the token rotated since on another instance, whose budget is its own
// without Redis; its child used since), and the refusals of an ended
// session or another client's token, which refuseEnded makes without a
// lock too.
func (s *Service) overBudgetAgain(ctx context.Context, raw, digest, clientID string) error {
	now := s.now()
	wait := s.overBudget.wait(digest, now)
	if wait <= 0 {
		return nil
	}
	t, sess, u, err := s.store.RefreshSession(ctx, digest) // outside a transaction: no lock
	if err != nil || u.IsDeleted() || u.LockedByAdmin(now) || sess.ClientID != clientID || !sess.RevokedAt.IsZero() ||
		!sess.Active(now) || !t.Revoked && t.Expired(now) {
		return nil
	}
	if t.Revoked {
		_, childDigest := s.childToken(raw)
		if child, err := s.graceChild(ctx, s.store, t, childDigest, now); err != nil || child == nil {
			return nil
		}
	}
	return rateLimited(wait)
}

// overSessionBudget is refresh's answer to a token the session's budget
// refused (err, ERateLimited) at now, remembered until the budget allows
// it again, but not past end (zero: no bound).
func (s *Service) overSessionBudget(digest string, err error, now, end time.Time) error {
	if e, ok := errors.AsType[*Error](err); ok && e.RetryAfter > 0 {
		until := now.Add(e.RetryAfter)
		if !end.IsZero() && end.Before(until) {
			until = end
		}
		s.overBudget.note(digest, until, now)
	}
	return err
}

// Refresh exchanges a refresh token for a new pair and revokes it (SPEC
// §6.4). The new refresh token is derived from the one presented with the
// server's refresh key, so a repeat within the grace window, while that
// child is unused, gets the same child back (with a new access token of the
// same session): every tab ends up on one chain and a session never forks.
// Any other use of a revoked refresh token is reuse: the whole session is
// revoked and logged. Returns EInvalidToken, ERateLimited, EUnavailable.
//
// The refresh tokens of a session an OpenID Connect client started work
// only through RefreshForClient, for that client.
func (s *Service) Refresh(ctx context.Context, c Client, refreshToken string) (*TokenPair, error) {
	return s.refresh(ctx, c, refreshToken, "", nil)
}

// RefreshForClient is Refresh at the OpenID Connect token endpoint: the
// same rotation, grace and reuse rules, for a refresh token of a session
// that client (authenticated by the caller) started. scopes, when the
// request named any (RFC 6749 §6; nil when it did not), must be the ones
// granted: no narrower tokens are issued, and a client that asked for less
// must not believe it got less. Returns EInvalidToken for any other refresh
// token, EInvalid on the field "scope", ERateLimited, EUnavailable.
func (s *Service) RefreshForClient(ctx context.Context, c Client, clientID, refreshToken string, scopes []string) (*TokenPair, error) {
	if clientID == "" {
		return nil, errInvalidToken
	}
	return s.refresh(ctx, c, refreshToken, clientID, scopes)
}

// refresh is the one rotation of SPEC 6.4, for the sessions of clientID
// ("" for the JSON API's own sessions), held to scopes when not nil.
func (s *Service) refresh(ctx context.Context, c Client, refreshToken, clientID string, scopes []string) (*TokenPair, error) {
	// A rotation finishes whatever the client does: on PostgreSQL the
	// ordinary one is a statement that commits on its own, and a client told
	// it failed would retry with a token now revoked, which after the grace
	// window is reuse and ends its session.
	ctx, cancel := s.detach(ctx)
	defer cancel()
	digest, err := opaqueDigest(refreshToken)
	if err != nil {
		return nil, s.refuseToken(ctx, nil, c, EventTokenRefreshed, uuid.Nil, "malformed refresh token", nil)
	}
	if err := s.overBudgetAgain(ctx, refreshToken, digest, clientID); err != nil {
		return nil, err
	}
	if r, ok := s.store.(Rotator); ok && scopes == nil { // rare: the transaction below checks them
		pair, err := s.rotateAtOnce(ctx, r, c, refreshToken, digest, clientID)
		if ErrorCode(err) != ENotFound {
			return pair, err
		}
	}
	// Where the store rotates at once (PostgreSQL), its transaction's
	// locking read share-locks the user's row, which dead tokens must not
	// hold (refuseEnded). SQLite has no row locks: a refusal takes its
	// writer lane for the audit row either way, so the extra read would only
	// cost every refresh (−7 % of SQLite refreshes at c=32).
	if _, rowLocks := s.store.(Rotator); rowLocks {
		if ended, err := s.refuseEnded(ctx, c, refreshToken, digest, clientID); ended {
			return nil, err
		}
	}
	var pair *TokenPair
	err = s.inTx(ctx, func(tx *txn) error {
		// Locked: two refreshes never both rotate one token.
		t, sess, u, err := tx.RefreshSession(ctx, digest)
		if ErrorCode(err) == ENotFound {
			return s.refuseToken(ctx, tx, c, EventTokenRefreshed, uuid.Nil, "unknown refresh token", nil)
		}
		if err != nil {
			return err
		}
		// Read once the rows are locked: a rotation stamped when the wait
		// began would start its grace window already spent, and a client
		// that gave up waiting and repeats the token would be told of reuse.
		now := s.now()
		if u.IsDeleted() { // its row keeps no client (the store's CreateSecurityLog)
			return s.refuseToken(ctx, tx, c, EventTokenRefreshed, u.ID, "account deleted", nil)
		}
		ctxt := map[string]any{"session_id": sess.ID.String()}
		switch {
		case sess.ClientID != clientID:
			// Another client's token, or a client's at the JSON API: not
			// a refresh token here, and no reuse of anyone's chain.
			return s.refuseToken(ctx, tx, c, EventTokenRefreshed, u.ID, "refresh token of another client", ctxt)
		case !sess.RevokedAt.IsZero():
			event, reason, ctxt, err := s.endedSession(ctx, tx, refreshToken, t, sess, now)
			if err != nil {
				return err
			}
			return s.refuseToken(ctx, tx, c, event, u.ID, reason, ctxt)
		case !sess.Active(now) || t.Expired(now) && !t.Revoked:
			// A token rotated (revoked in a live session) and presented
			// after its own expiry is still reuse: the session it was
			// stolen from may live on in the thief's chain.
			return s.refuseToken(ctx, tx, c, EventTokenRefreshed, u.ID, "refresh token expired", ctxt)
		case u.LockedByAdmin(now):
			return s.refuseToken(ctx, tx, c, EventTokenRefreshed, u.ID, "account locked", ctxt)
		}
		childRaw, childDigest := s.childToken(refreshToken)
		var child *Token
		if t.Revoked {
			// Reuse is decided before the per-session limit, which whoever
			// holds the session's live chain can spend: a replay must end
			// the session whatever the budget.
			if child, err = s.graceChild(ctx, tx, t, childDigest, now); err != nil {
				return err
			}
			if child == nil {
				return s.reuse(ctx, tx, c, t, sess, u.ID, now)
			}
		}
		budget, end := "refresh:", time.Time{}
		if t.Revoked { // a repeat within the grace window
			budget, end = "refresh-retry:", t.RotatedAt.Add(s.cfg.RefreshReuseGrace)
		}
		if err := s.limit(ctx, budget+sess.ID.String(), refreshPerSession, time.Minute); err != nil {
			return s.overSessionBudget(digest, err, now, end)
		}
		// After every refusal and reuse, which no scope may dodge, and
		// within the session's budget and its trail: a token's holder who
		// asks with another scope learns the token is live, as a refresh
		// would tell.
		if scopes != nil && !sameScopes(scopes, sess.Scopes) {
			return tx.refuse(ctx, s.audit(now, c, EventTokenRefreshed, ResultFailure, u.ID, "scope not granted", ctxt),
				&Error{Code: EInvalid, Message: fmt.Sprintf("A refresh keeps the scope granted (%s): send it whole, "+
					"or leave scope out.", strings.Join(sess.Scopes, " ")),
					Fields: []FieldError{{Field: "scope", Message: "must be the scope granted"}}})
		}
		if t.Revoked {
			sess.LastUsedAt = now
			if err := tx.UpdateSession(ctx, sess); err != nil {
				return err
			}
			access, err := s.issueAccess(sess, now)
			if err != nil {
				return err
			}
			pair = &TokenPair{AccessToken: access.token, ExpiresIn: access.expires.Sub(now), RefreshToken: childRaw,
				RefreshExpiresIn: child.ExpiresAt.Sub(now), SessionID: sess.ID}
			return tx.CreateSecurityLog(ctx, s.audit(now, c, EventTokenRefreshed, ResultSuccess, u.ID, "",
				map[string]any{"session_id": sess.ID.String(), "retry": true}))
		}
		t.Revoked, t.RevokedAt, t.RotatedAt = true, now, now
		sess.LastUsedAt = now
		if err := tx.SaveRotation(ctx, t, sess); err != nil {
			return err
		}
		p, err := s.issuePair(ctx, tx, sess, childRaw, t.ID, now)
		if err != nil {
			return err
		}
		if err := tx.CreateSecurityLog(ctx, s.audit(now, c, EventTokenRefreshed, ResultSuccess, u.ID, "",
			map[string]any{"session_id": sess.ID.String(), "retry": false})); err != nil {
			return err
		}
		pair = p
		return nil
	})
	if err != nil {
		return nil, err // a pair made before a failed commit is no pair
	}
	return pair, nil
}

// deadTokenAge is how long past its expiry an unrevoked refresh token is
// refused without the transaction: longer than any rotation takes to commit
// after reading its clock (a flow's detachedFlowTimeout), with a minute and
// a half for instances' clocks that disagree. Until then a flood of the
// token takes the locking read (an hour, before a review: a dozen clients
// held the user's row for seconds at a time).
const deadTokenAge = 2 * time.Minute

// refuseEnded refuses, from a read that locks nothing, a refresh token of an
// ended session of clientID (logged out, revoked or expired), of another
// client's session, or unrevoked and expired for deadTokenAge, whose user
// is not erased, as refresh's transaction would: none of these states ever
// changes back. That transaction's locking read share-locks the user's row, and a
// flood of such tokens (one a logout left; retention keeps them a day past
// their expiry) held it without a break: the user's logins and an
// administrator's lock, which update the row, waited behind it. ended is
// false for any other token, which the transaction decides.
func (s *Service) refuseEnded(ctx context.Context, c Client, raw, digest, clientID string) (ended bool, err error) {
	t, sess, u, err := s.store.RefreshSession(ctx, digest) // outside a transaction: one read, no lock
	if err != nil || u.IsDeleted() {
		return false, nil
	}
	now := s.now()
	var reason string
	switch {
	case sess.ClientID != clientID: // never changes, and is checked first
		reason = "refresh token of another client"
	case !sess.RevokedAt.IsZero():
		event, reason, ctxt, err := s.endedSession(ctx, s.store, raw, t, sess, now)
		if err != nil {
			return true, err
		}
		return true, s.refuseToken(ctx, nil, c, event, u.ID, reason, ctxt)
	case !sess.Active(now):
		reason = "refresh token expired"
	case !t.Revoked && now.After(t.ExpiresAt.Add(deadTokenAge)):
		// Unrevoked, long expired: no rotation that read its clock before
		// the expiry can still be committing (reuse would be the answer).
		reason = "refresh token expired"
	default:
		return false, nil
	}
	return true, s.refuseToken(ctx, nil, c, EventTokenRefreshed, u.ID, reason,
		map[string]any{"session_id": sess.ID.String()})
}

// endedSession is how the refresh token raw (t) of an ended session is
// refused: one a refresh rotated out is reuse (SPEC 6.4) as in a live
// session — past the grace window, or within it once its child was used —
// logged as such although its session has ended already: by the first
// reuse, when the losers of a race without grace come after it, or by a
// logout the thief's replay comes after. Any other (revoked with its
// session, or a client's repeat within the window, its child unused) is a
// refresh of an ended session.
func (s *Service) endedSession(ctx context.Context, q Queries, raw string, t *Token, sess *Session,
	now time.Time) (EventType, string, map[string]any, error) {
	ctxt := map[string]any{"session_id": sess.ID.String()}
	reuse := t.Revoked && !t.RotatedAt.IsZero()
	if reuse && s.cfg.RefreshReuseGrace > 0 && now.Sub(t.RotatedAt) <= s.cfg.RefreshReuseGrace {
		// Within the window: a repeat, unless the child was rotated in
		// turn (the session's end revoked it, which is no use).
		_, childDigest := s.childToken(raw)
		child, err := q.RefreshToken(ctx, childDigest)
		if err != nil && ErrorCode(err) != ENotFound {
			return "", "", nil, err
		}
		reuse = err == nil && !child.RotatedAt.IsZero()
	}
	if reuse {
		ctxt["token_id"], ctxt["session_ended"] = t.ID.String(), true
		return EventRefreshTokenReuse, "revoked refresh token presented", ctxt, nil
	}
	return EventTokenRefreshed, "session ended", ctxt, nil
}

// rotateAtOnce makes refresh's ordinary rotation in one statement, where
// the store can (Rotator), with the same effect as refresh's own
// transaction; ENotFound when the case is not ordinary (a revoked,
// expired or unknown token, an ended session, another client, a locked or
// erased account), for refresh to decide. The per-session limit is taken
// before the commit, as refresh takes it.
func (s *Service) rotateAtOnce(ctx context.Context, r Rotator, c Client, raw, digest, clientID string) (*TokenPair, error) {
	childRaw, childDigest := s.childToken(raw)
	// Its times are read once the store holds a connection (see Rotator).
	var now time.Time
	var rot *Rotation
	rotation := func() *Rotation {
		now = s.now()
		rot = &Rotation{Digest: digest, ClientID: clientID, Now: now,
			Child: &Token{ID: NewID(), JTI: NewID().String(), TokenType: TokenRefresh, TokenValue: childDigest,
				IssuedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTokenTTL), CreatedAt: now},
			Log: s.audit(now, c, EventTokenRefreshed, ResultSuccess, uuid.Nil, "", map[string]any{"retry": false})}
		return rot
	}
	var admit func(*Session) error
	if s.limiter != nil {
		admit = func(sess *Session) error {
			return s.limit(ctx, "refresh:"+sess.ID.String(), refreshPerSession, time.Minute)
		}
	}
	sess, err := r.Rotate(ctx, rotation, admit)
	if ErrorCode(err) == ERateLimited {
		return nil, s.overSessionBudget(digest, err, now, time.Time{})
	}
	if err != nil {
		return nil, err
	}
	s.observeEvent(rot.Log)
	// Signed after the commit: should signing fail, the client's repeat
	// within the grace window gets this child (graceChild).
	access, err := s.issueAccess(sess, now)
	if err != nil {
		return nil, err
	}
	return &TokenPair{AccessToken: access.token, ExpiresIn: access.expires.Sub(now), RefreshToken: childRaw,
		RefreshExpiresIn: minTime(rot.Child.ExpiresAt, sess.ExpiresAt).Sub(now), SessionID: sess.ID}, nil
}

// graceChild returns the child of the revoked refresh token t (its digest
// given) when t is presented again within the grace window after its
// rotation and the child is still unused, locked; nil when the repeat is
// reuse.
func (s *Service) graceChild(ctx context.Context, q Queries, t *Token, childDigest string, now time.Time) (*Token, error) {
	if t.RotatedAt.IsZero() || s.cfg.RefreshReuseGrace <= 0 || now.Sub(t.RotatedAt) > s.cfg.RefreshReuseGrace {
		return nil, nil
	}
	child, err := q.RefreshToken(ctx, childDigest)
	if ErrorCode(err) == ENotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if child.Revoked || child.Expired(now) || child.SessionID != t.SessionID {
		return nil, nil
	}
	return child, nil
}

// reuse answers a revoked refresh token presented again: the session ends
// everywhere and the event is logged.
func (s *Service) reuse(ctx context.Context, tx *txn, c Client, t *Token, sess *Session, user uuid.UUID, now time.Time) error {
	if err := s.endSession(ctx, tx, sess, now, string(EventRefreshTokenReuse)); err != nil {
		return err
	}
	return tx.refuse(ctx, s.audit(now, c, EventRefreshTokenReuse, ResultFailure, user, "revoked refresh token presented",
		map[string]any{"session_id": sess.ID.String(), "token_id": t.ID.String()}), errInvalidToken)
}

// childToken derives the refresh token that rotating parent mints, and its
// digest: HMAC-SHA-256 under the refresh key, which every instance shares, so
// a repeat of parent finds the same child without any secret being stored.
func (s *Service) childToken(parent string) (raw, digest string) {
	raw = base64.RawURLEncoding.EncodeToString(labelledMAC(s.refreshKey, "authd refresh rotation v1", parent))
	return raw, Digest(raw)
}

// signedAccess is an access token and when it expires.
type signedAccess struct {
	token   string
	expires time.Time
}

// issueAccess signs an access token of session sess. Access tokens get no
// row: only one revoked before it expires does (SPEC 6.3).
func (s *Service) issueAccess(sess *Session, now time.Time) (signedAccess, error) {
	// Never past the session's end: its max age, nor the idle lifetime
	// that this use starts (SPEC §2 takes any lifetime from 1 s, a refresh
	// TTL under the access TTL too: a session that has ended idle, listed
	// no more and beyond a sign-out, must not leave a working token).
	exp := minTime(minTime(now.Add(s.cfg.AccessTokenTTL), sess.ExpiresAt), now.Add(s.cfg.RefreshTokenTTL))
	token, err := s.tokens.Issue(AccessClaims{JTI: NewID().String(), UserID: sess.UserID, SessionID: sess.ID,
		IssuedAt: now, ExpiresAt: exp, AMR: sess.AMR, ClientID: sess.ClientID, Scope: sess.Scopes})
	return signedAccess{token: token, expires: exp}, err
}

// issuePair issues an access token and the refresh token raw in session
// sess; the refresh token gets its jwt_tokens row. Neither outlives the
// session.
func (s *Service) issuePair(ctx context.Context, tx *txn, sess *Session, raw string, parent uuid.UUID,
	now time.Time) (*TokenPair, error) {
	access, err := s.issueAccess(sess, now)
	if err != nil {
		return nil, err
	}
	refreshExp := minTime(now.Add(s.cfg.RefreshTokenTTL), sess.ExpiresAt)
	row := &Token{ID: NewID(), JTI: NewID().String(), UserID: sess.UserID, SessionID: sess.ID, ParentID: parent,
		TokenType: TokenRefresh, TokenValue: Digest(raw), IssuedAt: now, ExpiresAt: refreshExp,
		DeviceInfo: sess.DeviceInfo, CreatedAt: now}
	if err := tx.CreateToken(ctx, row); err != nil {
		return nil, err
	}
	return &TokenPair{AccessToken: access.token, ExpiresIn: access.expires.Sub(now), RefreshToken: raw,
		RefreshExpiresIn: refreshExp.Sub(now), SessionID: sess.ID}, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// sameScopes reports whether a and b name the same scopes.
func sameScopes(a, b []string) bool {
	return !slices.ContainsFunc(a, func(s string) bool { return !slices.Contains(b, s) }) &&
		!slices.ContainsFunc(b, func(s string) bool { return !slices.Contains(a, s) })
}
