package authd

import (
	"context"
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

// MaxDeviceInfoLength bounds the device description a client may send.
const MaxDeviceInfoLength = 255

var errInvalidCredentials = &Error{Code: EInvalidCredentials, Message: "The email or password is incorrect."}

// Login checks email and password and starts a session (SPEC §6.3, §6.7).
// Unknown emails cost the same hashing time and get the same answer as a
// wrong password. Consecutive failures lock the account; while it is locked
// the right password gets EAccountLocked (with RetryAfter) and a wrong one
// the usual EInvalidCredentials. Returns EInvalid, EInvalidCredentials,
// EEmailNotVerified, EAccountLocked, ERateLimited, EUnavailable.
func (s *Service) Login(ctx context.Context, c Client, email, password, deviceInfo string) (*TokenPair, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	if len(deviceInfo) > MaxDeviceInfoLength {
		return nil, &Error{Code: EInvalid, Message: "invalid request",
			Fields: []FieldError{{Field: "device_info", Message: "must be at most 255 bytes"}}}
	}
	if err := s.limitIP(ctx, "login", c); err != nil {
		return nil, err
	}
	if err := s.limitEmail(ctx, "login", email, loginPerEmail, time.Minute); err != nil {
		return nil, err
	}

	u, err := s.store.UserByEmail(ctx, email)
	if err != nil && ErrorCode(err) != ENotFound {
		return nil, err
	}
	if err != nil || u.IsDeleted() || u.PasswordHash == "" {
		if err := s.passwords.VerifyDummy(ctx, password); err != nil {
			return nil, err
		}
		l := s.audit(s.now(), c, EventLoginFailure, ResultFailure, uuid.Nil, "unknown email", nil)
		if err := s.logEvent(ctx, l); err != nil {
			return nil, err
		}
		return nil, errInvalidCredentials
	}
	checked := u.PasswordHash
	ok, rehash, err := s.passwords.Verify(ctx, password, checked)
	if err != nil {
		return nil, err
	}
	var newHash string
	if ok && rehash {
		if newHash, err = s.passwords.Hash(ctx, password); err != nil {
			return nil, err
		}
	}

	var pair *TokenPair
	var result error
	err = s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		pair, result = nil, nil
		// Reload and lock: the account may have changed while we hashed.
		u, err := tx.User(ctx, u.ID)
		if err != nil {
			return err
		}
		if u.LockExpired(now) {
			if err := s.unlock(ctx, tx, c, u, now, "lock expired"); err != nil {
				return err
			}
		}
		fail := func(reason string, res error) error {
			result = res
			return tx.CreateSecurityLog(ctx, s.audit(now, c, EventLoginFailure, ResultFailure, u.ID, reason, nil))
		}
		switch {
		case u.IsDeleted():
			return fail("account deleted", errInvalidCredentials)
		case u.PasswordHash != checked:
			// A reset or change committed while we hashed: the password
			// we checked is no longer the account's.
			return fail("password changed during login", errInvalidCredentials)
		case u.IsLocked(now) && ok:
			return fail("account locked", lockedError(u, now))
		case u.IsLocked(now):
			return fail("invalid password (account locked)", errInvalidCredentials)
		case !ok:
			return s.failedLogin(ctx, tx, c, u, now, &result)
		case !u.EmailVerified && s.cfg.RequireVerifiedEmail:
			return fail("email not verified", &Error{Code: EEmailNotVerified,
				Message: "Verify your email address first; we can send the link again."})
		}
		u.FailedLoginAttempts = 0
		u.LastLoginTimestamp = now
		u.UpdatedAt = now
		if newHash != "" {
			u.PasswordHash = newHash
		}
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		sess := &Session{ID: NewID(), UserID: u.ID, DeviceInfo: deviceInfo, CreatedAt: now, LastUsedAt: now,
			ExpiresAt: now.Add(s.cfg.SessionMaxAge)}
		if err := tx.CreateSession(ctx, sess); err != nil {
			return err
		}
		if pair, err = s.issuePair(ctx, tx, sess, uuid.Nil, now); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventLoginSuccess, ResultSuccess, u.ID, "",
			map[string]any{"session_id": sess.ID.String(), "device_info": deviceInfo, "rehashed": newHash != ""}))
	})
	if err != nil {
		return nil, err
	}
	return pair, result
}

// failedLogin counts a wrong password and locks the account at the
// threshold, blocking its tokens until the lock ends.
func (s *Service) failedLogin(ctx context.Context, tx *txn, c Client, u *User, now time.Time, result *error) error {
	*result = errInvalidCredentials
	u.FailedLoginAttempts++
	u.UpdatedAt = now
	locked := u.FailedLoginAttempts >= s.cfg.LockoutThreshold
	if locked {
		u.AccountStatus = StatusLocked
		u.AccountLockedUntil = now.Add(s.cfg.LockoutDuration)
	}
	if err := tx.UpdateUser(ctx, u); err != nil {
		return err
	}
	if err := tx.CreateSecurityLog(ctx, s.audit(now, c, EventLoginFailure, ResultFailure, u.ID, "invalid password",
		map[string]any{"failed_attempts": u.FailedLoginAttempts})); err != nil {
		return err
	}
	if !locked {
		return nil
	}
	if err := tx.revoke(ctx, Revocation{At: now, UserID: u.ID, Block: true, BlockUntil: u.AccountLockedUntil}); err != nil {
		return err
	}
	if err := tx.enqueue(ctx, now, MailAccountLocked, u, u.AccountLockedUntil); err != nil {
		return err
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, EventAccountLocked, ResultSuccess, u.ID,
		"too many failed logins", map[string]any{"until": u.AccountLockedUntil, "failed_attempts": u.FailedLoginAttempts}))
}

// unlock ends a lock: the account returns to active (or inactive while its
// email is unverified and verification is required) with a clean counter.
func (s *Service) unlock(ctx context.Context, tx *txn, c Client, u *User, now time.Time, reason string) error {
	u.AccountStatus = StatusActive
	if !u.EmailVerified && s.cfg.RequireVerifiedEmail {
		u.AccountStatus = StatusInactive
	}
	u.AccountLockedUntil = time.Time{}
	u.FailedLoginAttempts = 0
	u.UpdatedAt = now
	if err := tx.UpdateUser(ctx, u); err != nil {
		return err
	}
	if err := tx.revoke(ctx, Revocation{At: now, UserID: u.ID, Unblock: true}); err != nil {
		return err
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, EventAccountUnlocked, ResultSuccess, u.ID, reason, nil))
}

// issuePair issues an access and a refresh token in session sess, each with
// its jwt_tokens row. Neither outlives the session.
func (s *Service) issuePair(ctx context.Context, tx *txn, sess *Session, parent uuid.UUID, now time.Time) (*TokenPair, error) {
	accessExp := minTime(now.Add(s.cfg.AccessTokenTTL), sess.ExpiresAt)
	refreshExp := minTime(now.Add(s.cfg.RefreshTokenTTL), sess.ExpiresAt)
	jti := NewID().String()
	access, err := s.tokens.Issue(AccessClaims{JTI: jti, UserID: sess.UserID, SessionID: sess.ID,
		IssuedAt: now, ExpiresAt: accessExp})
	if err != nil {
		return nil, err
	}
	raw, digest := newOpaqueToken()
	rows := []*Token{
		{ID: NewID(), JTI: jti, UserID: sess.UserID, SessionID: sess.ID, ParentID: parent, TokenType: TokenAccess,
			IssuedAt: now, ExpiresAt: accessExp, DeviceInfo: sess.DeviceInfo, CreatedAt: now},
		{ID: NewID(), JTI: NewID().String(), UserID: sess.UserID, SessionID: sess.ID, ParentID: parent,
			TokenType: TokenRefresh, TokenValue: digest, IssuedAt: now, ExpiresAt: refreshExp,
			DeviceInfo: sess.DeviceInfo, CreatedAt: now},
	}
	if err := tx.CreateToken(ctx, rows...); err != nil {
		return nil, err
	}
	return &TokenPair{AccessToken: access, ExpiresIn: accessExp.Sub(now), RefreshToken: raw,
		RefreshExpiresIn: refreshExp.Sub(now), SessionID: sess.ID}, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Refresh exchanges a refresh token for a new pair and revokes it (SPEC
// §6.4). A repeat within the grace window after its rotation gets a fresh
// pair of the same session; any other use of a revoked refresh token is
// reuse: the whole session is revoked and logged. Returns EInvalidToken,
// EAccountLocked, EUnavailable.
func (s *Service) Refresh(ctx context.Context, c Client, refreshToken string) (*TokenPair, error) {
	digest, err := opaqueDigest(refreshToken)
	if err != nil {
		return nil, err
	}
	var pair *TokenPair
	var result error
	err = s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		pair, result = nil, nil
		// Locked: two refreshes never both rotate one token.
		t, sess, u, err := tx.RefreshSession(ctx, digest)
		if ErrorCode(err) == ENotFound {
			result = errInvalidToken
			return nil
		}
		if err != nil {
			return err
		}
		grace := t.Revoked && !t.RotatedAt.IsZero() && s.cfg.RefreshReuseGrace > 0 &&
			now.Sub(t.RotatedAt) <= s.cfg.RefreshReuseGrace
		switch {
		case t.Revoked && !grace:
			result = errInvalidToken
			if !sess.RevokedAt.IsZero() {
				return nil // the session already ended; nothing more to revoke
			}
			if err := s.endSession(ctx, tx, sess, now); err != nil {
				return err
			}
			return tx.CreateSecurityLog(ctx, s.audit(now, c, EventRefreshTokenReuse, ResultFailure, u.ID,
				"revoked refresh token presented", map[string]any{"session_id": sess.ID.String(), "token_id": t.ID.String()}))
		case t.Expired(now) || !sess.Active(now) || u.IsDeleted():
			result = errInvalidToken
			return nil
		case u.IsLocked(now):
			result = lockedError(u, now)
			return nil
		}
		if !t.Revoked {
			t.Revoked, t.RevokedAt, t.RotatedAt = true, now, now
		}
		sess.LastUsedAt = now
		if err := tx.SaveRotation(ctx, t, sess); err != nil {
			return err
		}
		if pair, err = s.issuePair(ctx, tx, sess, t.ID, now); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventTokenRefreshed, ResultSuccess, u.ID, "",
			map[string]any{"session_id": sess.ID.String(), "retry": grace}))
	})
	if err != nil {
		return nil, err
	}
	return pair, result
}

// endSession revokes a session and its tokens everywhere.
func (s *Service) endSession(ctx context.Context, tx *txn, sess *Session, now time.Time) error {
	if err := tx.RevokeSession(ctx, sess.ID, now); err != nil {
		return err
	}
	sess.RevokedAt = now
	return tx.revoke(ctx, Revocation{At: now, SessionIDs: []uuid.UUID{sess.ID}})
}

// endUserSessions revokes every session of the user but except.
func (s *Service) endUserSessions(ctx context.Context, tx *txn, user, except uuid.UUID, now time.Time) ([]uuid.UUID, error) {
	ids, err := tx.RevokeUserSessions(ctx, user, except, now)
	if err != nil || len(ids) == 0 {
		return ids, err
	}
	return ids, tx.revoke(ctx, Revocation{At: now, SessionIDs: ids})
}

// Authenticate checks an access token: signature and claims, then the
// revocation set. No database round trip. Returns EInvalidToken.
func (s *Service) Authenticate(ctx context.Context, token string) (*AccessClaims, error) {
	now := s.clock.Now()
	claims, err := s.tokens.Verify(token, now)
	if err != nil {
		return nil, err
	}
	if s.revocations.Revoked(claims.SessionID, claims.UserID, now) {
		return nil, errInvalidToken
	}
	return claims, nil
}

// Logout ends the session of the access token. Returns EUnavailable.
func (s *Service) Logout(ctx context.Context, c Client, a *AccessClaims) error {
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		sess, err := tx.Session(ctx, a.SessionID)
		if err != nil {
			return err
		}
		if err := s.endSession(ctx, tx, sess, now); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventLogout, ResultSuccess, a.UserID, "",
			map[string]any{"session_id": sess.ID.String()}))
	})
}

// LogoutAll ends every session of the token's user. Returns EUnavailable.
func (s *Service) LogoutAll(ctx context.Context, c Client, a *AccessClaims) error {
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		ids, err := s.endUserSessions(ctx, tx, a.UserID, uuid.Nil, now)
		if err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventLogoutAll, ResultSuccess, a.UserID, "",
			map[string]any{"sessions": len(ids)}))
	})
}

// Sessions lists the user's active sessions, newest first.
func (s *Service) Sessions(ctx context.Context, a *AccessClaims) ([]*Session, error) {
	return s.store.Sessions(ctx, a.UserID, s.now())
}

// RevokeSession ends one of the user's sessions. ENotFound when the user has
// no such active session.
func (s *Service) RevokeSession(ctx context.Context, c Client, a *AccessClaims, id uuid.UUID) error {
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		sess, err := tx.Session(ctx, id)
		if ErrorCode(err) == ENotFound || (err == nil && (sess.UserID != a.UserID || !sess.Active(now))) {
			return Errorf(ENotFound, "No such session.")
		}
		if err != nil {
			return err
		}
		if err := s.endSession(ctx, tx, sess, now); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventSessionRevoked, ResultSuccess, a.UserID, "",
			map[string]any{"session_id": id.String(), "current": id == a.SessionID}))
	})
}

// Me returns the token's user. EInvalidToken when the account is locked or
// deleted.
func (s *Service) Me(ctx context.Context, a *AccessClaims) (*User, error) {
	u, err := s.store.User(ctx, a.UserID)
	if ErrorCode(err) == ENotFound {
		return nil, errInvalidToken
	}
	if err != nil {
		return nil, err
	}
	if u.IsDeleted() || u.IsLocked(s.now()) {
		return nil, errInvalidToken
	}
	return u, nil
}

// lockedError is EAccountLocked, with RetryAfter when the lock has an end.
func lockedError(u *User, now time.Time) *Error {
	e := &Error{Code: EAccountLocked, Message: "The account is locked; try again later."}
	if !u.AccountLockedUntil.IsZero() {
		e.RetryAfter = u.AccountLockedUntil.Sub(now)
	}
	return e
}
