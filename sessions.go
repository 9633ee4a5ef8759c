package authd

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
)

// TokenPair is what login and refresh return.
type TokenPair struct {
	AccessToken      string
	ExpiresIn        time.Duration
	RefreshToken     string
	RefreshExpiresIn time.Duration
	SessionID        uuid.UUID
}

// endSession revokes a session and its tokens everywhere; reason names the
// flow for the revocation feed's table.
func (s *Service) endSession(ctx context.Context, tx *txn, sess *Session, now time.Time, reason string) error {
	if err := tx.RevokeSession(ctx, sess.ID, now); err != nil {
		return err
	}
	sess.RevokedAt = now
	return tx.revoke(ctx, Revocation{At: now, SessionIDs: []uuid.UUID{sess.ID}, Reason: reason})
}

// endUserSessions revokes every session of the user but except; reason
// names the flow for the revocation feed's table. With no exception the
// feed also revokes the user's tokens issued before now, and the user's
// sign-ins awaiting their second factor end too.
func (s *Service) endUserSessions(ctx context.Context, tx *txn, user, except uuid.UUID, now time.Time,
	reason string) ([]uuid.UUID, error) {
	if except == uuid.Nil {
		// And the sign-ins that would start one once their second factor
		// passes: ended with the others, or an administrator's lock (once
		// lifted) or a logout-all would let them in minutes later.
		if err := tx.VoidOpenMFAChallenges(ctx, user, MFAChallengeEnded); err != nil {
			return nil, err
		}
	}
	ids, err := tx.RevokeUserSessions(ctx, user, except, now)
	if err != nil || len(ids) == 0 {
		return ids, err
	}
	rev := Revocation{At: now, SessionIDs: ids, Reason: reason}
	if except == uuid.Nil {
		rev.UserID = user
	}
	return ids, tx.revoke(ctx, rev)
}

// sessionKeep is how many of a user's sessions a new one leaves
// (MaxSessions-1), or -1 when there is no limit.
func (s *Service) sessionKeep() int {
	if s.cfg.MaxSessions <= 0 {
		return -1
	}
	return s.cfg.MaxSessions - 1
}

// evictSessions makes room for a new session: it ends excess, the user's
// least recently used sessions beyond MaxSessions-1 as SignInState read
// them, so that no account can grow its sessions without end and the new
// one is never among them.
func (s *Service) evictSessions(ctx context.Context, tx *txn, c Client, user uuid.UUID, excess []uuid.UUID, now time.Time) error {
	if len(excess) == 0 {
		return nil
	}
	if err := tx.RevokeSessions(ctx, excess, now); err != nil {
		return err
	}
	if err := tx.revoke(ctx, Revocation{At: now, SessionIDs: excess, Reason: "session_limit"}); err != nil {
		return err
	}
	return s.logSessionsEnded(ctx, tx, c, user, excess, "session limit reached",
		map[string]any{"max_sessions": s.cfg.MaxSessions}, now)
}

// endSessionsSignedInWith ends the user's sessions that f signed in
// (Session.SignedInWith) but except, the request's own: a factor removed
// takes the sign-ins it let in with it, as a new password ends the others.
// A passkey someone else holds (synced to their device) signs in without
// the password, and its owner, removing it, has no password to change.
// Each is logged; the zero SignInFactor ends none.
func (s *Service) endSessionsSignedInWith(ctx context.Context, tx *txn, c Client, user uuid.UUID, f SignInFactor,
	except uuid.UUID, now time.Time) error {
	if f == (SignInFactor{}) {
		return nil
	}
	ids, err := tx.RevokeSessionsSignedInWith(ctx, user, f, except, now)
	if err != nil || len(ids) == 0 {
		return err
	}
	if err := tx.revoke(ctx, Revocation{At: now, SessionIDs: ids, Reason: "factor_removed"}); err != nil {
		return err
	}
	detail := map[string]any{"method": f.Method}
	if f.PasskeyID != uuid.Nil {
		detail["passkey_id"] = f.PasskeyID.String()
	}
	return s.logSessionsEnded(ctx, tx, c, user, ids, "the factor it signed in with was removed", detail, now)
}

// logSessionsEnded writes a session_revoked row of the user for each of
// ids, with reason and detail beside the session's id.
func (s *Service) logSessionsEnded(ctx context.Context, tx *txn, c Client, user uuid.UUID, ids []uuid.UUID, reason string,
	detail map[string]any, now time.Time) error {
	for _, id := range ids {
		ctxt := maps.Clone(detail)
		ctxt["session_id"] = id.String()
		if err := tx.CreateSecurityLog(ctx, s.audit(now, c, EventSessionRevoked, ResultSuccess, user, reason, ctxt)); err != nil {
			return err
		}
	}
	return nil
}

// Authenticate checks an access token: signature and claims, then the
// revocation set, caught up first when it is stale (RevocationMaxLag): no
// database round trip but then. Returns EInvalidToken, and
// ErrRevocationsStale while the set cannot be caught up.
func (s *Service) Authenticate(ctx context.Context, token string) (*AccessClaims, error) {
	claims, err := s.tokens.Verify(token, s.clock.Now())
	if err != nil {
		return nil, err
	}
	// Caught up before the set is read: a revocation the catch-up brings
	// must refuse this very token.
	if s.revocationsStale() && !s.catchUpStale(ctx) {
		return nil, ErrRevocationsStale
	}
	if s.revocations.Revoked(claims.SessionID) {
		return nil, errInvalidToken
	}
	return claims, nil
}

// ErrRevocationsStale is Authenticate's answer while the revocation set
// cannot be caught up (Config.RevocationMaxLag); adapters log it sampled,
// as ErrBusy.
var ErrRevocationsStale = &Error{Code: EUnavailable, Message: "Revoked sessions cannot be checked right now; try again shortly.",
	RetryAfter: time.Second}

// Logout ends the session of the access token, and blacklists the token
// itself (the seed's access-token row, SPEC 6.3). Returns EUnavailable.
func (s *Service) Logout(ctx context.Context, c Client, a *AccessClaims) error {
	return s.inTx(ctx, func(tx *txn) error {
		sess, err := tx.Session(ctx, a.SessionID)
		if err != nil {
			return err
		}
		now := s.now()
		if !sess.RevokedAt.IsZero() {
			// Ended already (a repeat whose first answer was lost, on an
			// instance the revocation has not reached yet): the token is dead.
			return errInvalidToken
		}
		if err := s.endSession(ctx, tx, sess, now, string(EventLogout)); err != nil {
			return err
		}
		if err := tx.CreateToken(ctx, &Token{ID: NewID(), JTI: a.JTI, UserID: a.UserID, SessionID: sess.ID,
			TokenType: TokenAccess, IssuedAt: a.IssuedAt, ExpiresAt: a.ExpiresAt, Revoked: true, RevokedAt: now,
			DeviceInfo: sess.DeviceInfo, CreatedAt: now}); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventLogout, ResultSuccess, a.UserID, "",
			map[string]any{"session_id": sess.ID.String()}))
	})
}

// LogoutAll ends every session of the token's user. Returns EUnavailable.
func (s *Service) LogoutAll(ctx context.Context, c Client, a *AccessClaims) error {
	return s.inTx(ctx, func(tx *txn) error {
		// The user before the sessions, as every flow that ends several
		// locks them (Store.InTx): a sensitive change holds the user and
		// its own session, then ends the others; ending them from the
		// other end deadlocked with it.
		if _, err := tx.User(ctx, a.UserID); err != nil {
			return err
		}
		now := s.now()
		ids, err := s.endUserSessions(ctx, tx, a.UserID, uuid.Nil, now, string(EventLogoutAll))
		if err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventLogoutAll, ResultSuccess, a.UserID, "",
			map[string]any{"sessions": len(ids)}))
	})
}

// Sessions lists the user's active sessions, newest first: neither ended
// nor idle (live).
func (s *Service) Sessions(ctx context.Context, a *AccessClaims) ([]*Session, error) {
	now := s.now()
	all, err := s.store.Sessions(ctx, a.UserID, now)
	return slices.DeleteFunc(all, func(sess *Session) bool { return !s.live(sess, now) }), err
}

// live reports whether sess can still be used at now: active, and not
// idle. A session that refreshes has ended, idle, once it went unrefreshed
// for the refresh token's lifetime: its newest refresh token was issued
// when it was last used, and has expired (the store's purge deletes it
// once its tokens are gone). A hosted pages' browser sign-in lives on its
// cookie, not on the refresh token it never hands out.
func (s *Service) live(sess *Session, now time.Time) bool {
	return sess.Active(now) && (sess.BrowserDigest != "" || now.Before(sess.LastUsedAt.Add(s.cfg.RefreshTokenTTL)))
}

// RevokeSession ends one of the user's sessions. ENotFound when the user has
// no such active session.
func (s *Service) RevokeSession(ctx context.Context, c Client, a *AccessClaims, id uuid.UUID) error {
	return s.inTx(ctx, func(tx *txn) error {
		sess, err := tx.Session(ctx, id)
		now := s.now()
		if ErrorCode(err) == ENotFound || (err == nil && (sess.UserID != a.UserID || !s.live(sess, now))) {
			return Errorf(ENotFound, "No such session.")
		}
		if err != nil {
			return err
		}
		if err := s.endSession(ctx, tx, sess, now, string(EventSessionRevoked)); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventSessionRevoked, ResultSuccess, a.UserID, "",
			map[string]any{"session_id": id.String(), "current": id == a.SessionID}))
	})
}

// Me returns the token's user. EInvalidToken when the account is deleted
// or locked by an administrator; a brute-force lock stops password checks
// only, so a locked user's sessions go on working (SPEC 6.7).
func (s *Service) Me(ctx context.Context, a *AccessClaims) (*User, error) {
	return s.tokenUser(s.store.User(ctx, a.UserID))
}

// tokenUser is Me's answer for the user read (u, err): a flow in a
// transaction reads the user there (locked) and asks the same.
func (s *Service) tokenUser(u *User, err error) (*User, error) {
	if ErrorCode(err) == ENotFound {
		return nil, errInvalidToken
	}
	if err != nil {
		return nil, err
	}
	if u.IsDeleted() || u.LockedByAdmin(s.now()) {
		return nil, errInvalidToken
	}
	return u, nil
}
