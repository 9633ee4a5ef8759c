package authd

import (
	"context"
	"fmt"
	"time"

	"github.com/authd/authd/internal/pace"
	"github.com/google/uuid"
)

// MaxDeviceInfoLength bounds the device description a client may send.
const MaxDeviceInfoLength = 255

// checkDeviceInfo refuses a device description longer than
// MaxDeviceInfoLength, before any work of the sign-in it comes with.
func checkDeviceInfo(deviceInfo string) error {
	if len(deviceInfo) > MaxDeviceInfoLength {
		return invalidField("device_info", fmt.Sprintf("must be at most %d bytes", MaxDeviceInfoLength))
	}
	return nil
}

var errInvalidCredentials = &Error{Code: EInvalidCredentials, Message: "The email or password is incorrect."}

// Login checks email and password and starts a session (SPEC §6.3, §6.7).
// An unknown email costs the same hashing time, counts failures and locks
// like a wrong password for a real account, and gets the same answers.
// While an account is brute-force locked every login answers
// EAccountLocked (with RetryAfter) without checking the password, so a
// lock never confirms a guess. An administrator's lock is told only to the
// right password (loginBarred). For an account with an enabled second
// factor a right password starts no session: the error is *MFARequired
// (EMFARequired), and VerifyMFA finishes the login. Returns EInvalid, EInvalidCredentials,
// EEmailNotVerified, EMFARequired, EAccountLocked, ERateLimited, EUnavailable.
//
// Refusals answer together. The password's check is padded
// (password.Hasher), but the rest is not the same work for an account (its
// row counted and updated in a transaction) as for an address without one
// (a read of the lockout store before the check, a count in it after, a
// log row): with Redis a round trip or two apart, enough, over many
// guesses, to tell which addresses have accounts. So every refusal (401,
// and 423 whether it came before the check or while it ran) answers at one
// deadline from the start of the work: the later of the two paths'
// (accountFails, unknownFails: each learned from its own 401s, so that a
// flood of guesses at either cannot pull the deadline below the other).
// Faults, and right passwords, answer at once.
func (s *Service) Login(ctx context.Context, c Client, email, password, deviceInfo string) (*TokenPair, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return nil, err
	}
	if password == "" {
		// Refused before any counting, as the JSON API's check of the body
		// does, so that every adapter answers alike (a form sent empty).
		return nil, invalidField("password", "is required")
	}
	if err := checkDeviceInfo(deviceInfo); err != nil {
		return nil, err
	}
	if err := s.limitIP(ctx, "login", c); err != nil {
		return nil, err
	}
	if err := s.limitEmail(ctx, "login", email, loginPerEmail, time.Minute); err != nil {
		return nil, err
	}
	ctx, cancel := s.detach(ctx)
	defer cancel()
	var pair *TokenPair
	err = s.together(ctx, s.failDeadline(), func() (pad bool, teach *pace.Pace, err error) {
		var account bool
		pair, account, err = s.login(ctx, c, email, password, deviceInfo)
		switch ErrorCode(err) {
		case EInvalidCredentials: // a wrong password, checked
			teach = &s.unknownFails
			if account {
				teach = &s.accountFails
			}
			return true, teach, err
		case EAccountLocked: // before any check, or locked meanwhile
			return true, nil, err
		}
		return false, nil, err
	})
	if err != nil {
		return nil, err // a pair made before a failed commit is no pair
	}
	return pair, nil
}

// login is Login past its checks of the request and its limits; account
// reports whether email has an account (the path its answer took).
func (s *Service) login(ctx context.Context, c Client, email, password, deviceInfo string) (pair *TokenPair, account bool, err error) {
	u, err := s.store.UserByEmail(ctx, email)
	if err != nil && ErrorCode(err) != ENotFound {
		return nil, false, err
	}
	if err != nil || u.IsDeleted() || u.PasswordHash == "" {
		return nil, false, s.loginUnknown(ctx, c, email, password)
	}
	switch now := s.now(); {
	case u.LockedByAdmin(now):
		return nil, true, s.loginBarred(ctx, c, u, password)
	case u.IsLocked(now):
		return nil, true, s.refuseLocked(ctx, c, u.ID, s.lockedError(u.AccountLockedUntil.Sub(now)))
	default:
		if wait := s.guessesOutlast(u, now); wait > 0 {
			// The brute-force lock liftExpired will make of it, before
			// any hashing as for any such lock.
			return nil, true, s.refuseLocked(ctx, c, u.ID, s.lockedError(wait))
		}
	}
	checked := u.PasswordHash
	ok, rehash, err := s.passwords.Verify(ctx, password, checked)
	if err != nil {
		return nil, true, err
	}
	var newHash string
	if ok && rehash {
		if newHash, err = s.passwords.Hash(ctx, password); err != nil {
			return nil, true, err
		}
	}

	err = s.inTx(ctx, func(tx *txn) error {
		// Reload and lock: the account may have changed while we hashed.
		// What a session would start from comes in the same round trip.
		st, err := tx.SignInState(ctx, u.ID, s.sessionKeep(), s.now())
		if err != nil {
			return err
		}
		now := s.now() // once the rows are held (the wait for them is past)
		u := st.User
		if _, err := s.liftExpired(ctx, tx, c, u, now); err != nil {
			return err
		}
		if err := s.refuseStale(ctx, tx, c, u, email, checked, now); err != nil {
			return err
		}
		refuse := func(reason string, err error) error {
			return tx.refuse(ctx, s.audit(now, c, EventLoginFailure, ResultFailure, u.ID, reason, nil), err)
		}
		switch {
		case u.LockedByAdmin(now):
			// Locked by an administrator while we hashed: told only to
			// the right password, as any barred login (loginBarred).
			return s.barredCheck(ctx, tx, c, u, ok, now)
		case u.IsLocked(now):
			// Locked while we hashed: right and wrong guesses alike.
			return refuse("account locked", s.lockedError(u.AccountLockedUntil.Sub(now)))
		case !ok:
			return s.failedPassword(ctx, tx, c, u, now, EventLoginFailure, errInvalidCredentials)
		case !u.EmailVerified && s.cfg.RequireVerifiedEmail:
			return refuse("email not verified", &Error{Code: EEmailNotVerified,
				Message: "Verify your email address first; we can send the link again."})
		}
		if methods := s.usable(methodsOf(st.Factors, st.Passkeys)); len(methods) > 0 {
			if newHash != "" {
				u.PasswordHash, u.UpdatedAt = newHash, now
				if err := tx.UpdateUser(ctx, u); err != nil {
					return err
				}
			}
			return s.challenge(ctx, tx, c, u, deviceInfo, methods, now)
		}
		pair, err = s.startSession(ctx, tx, c, st, deviceInfo, []string{AMRPassword}, SignInFactor{}, newHash, now)
		return err
	})
	return pair, true, err
}

// startSession completes a login of st's user authenticated by amr, signed
// in with f beside the password or in its place: the failure count resets,
// st's excess sessions end, a new session (with newHash, when not empty, as
// the password's hash) holds the token pair, and the success is logged.
func (s *Service) startSession(ctx context.Context, tx *txn, c Client, st *SignInState, deviceInfo string,
	amr []string, f SignInFactor, newHash string, now time.Time) (*TokenPair, error) {
	u := st.User
	// The count starts over; a lock of second-factor codes does not end:
	// a passkey proves its owner here, not that whoever guessed codes with
	// the password has gone (a right code is refused while it lasts).
	u.clearFailures()
	u.LastLoginTimestamp = now
	u.UpdatedAt = now
	if newHash != "" {
		u.PasswordHash = newHash
	}
	if err := tx.UpdateUser(ctx, u); err != nil {
		return nil, err
	}
	sess := &Session{ID: NewID(), UserID: u.ID, DeviceInfo: deviceInfo, CreatedAt: now, LastUsedAt: now,
		ExpiresAt: now.Add(s.cfg.SessionMaxAge), AMR: amr, SignedInWith: f}
	if err := s.evictSessions(ctx, tx, c, u.ID, st.Excess, now); err != nil {
		return nil, err
	}
	if err := tx.CreateSession(ctx, sess); err != nil {
		return nil, err
	}
	raw, _ := newOpaqueToken()
	pair, err := s.issuePair(ctx, tx, sess, raw, uuid.Nil, now)
	if err != nil {
		return nil, err
	}
	return pair, tx.CreateSecurityLog(ctx, s.audit(now, c, EventLoginSuccess, ResultSuccess, u.ID, "",
		map[string]any{"session_id": sess.ID.String(), "device_info": deviceInfo, "rehashed": newHash != "",
			"amr": amr}))
}

// loginUnknown answers a login for an email without an account exactly as
// for one with an account and a wrong password: the same hashing time, and
// failures that count and lock alike, held in the rate-limit store.
func (s *Service) loginUnknown(ctx context.Context, c Client, email, password string) error {
	key := "lockout:" + s.emailKey(email)
	if wait := s.ghostLocked(ctx, key); wait > 0 {
		return s.refuseLocked(ctx, c, uuid.Nil, s.lockedError(wait))
	}
	if err := s.passwords.VerifyDummy(ctx, password); err != nil {
		return err
	}
	// Locked while we hashed, as an account's login finds in its
	// transaction: the lock is read and the failure counted in one step,
	// so that parallel guesses get the same answers either way.
	wait, locked := s.ghostFailed(ctx, key)
	if wait > 0 {
		return s.refuseLocked(ctx, c, uuid.Nil, s.lockedError(wait))
	}
	if locked {
		// The lock notice a real account would be mailed uses up a mail.
		_ = s.lockNoticeAllowed(ctx, email, false)
	}
	if err := s.logEvent(ctx, s.audit(s.now(), c, EventLoginFailure, ResultFailure, uuid.Nil, "unknown email", nil)); err != nil {
		return err
	}
	return errInvalidCredentials
}

// refuseStale refuses, in tx, a login at email that checked the password
// hash checked, for u as tx reads it now, when u was erased, its password
// replaced (a reset or change committed) or its address changed while the
// password was checked: the password checked is no longer the account's,
// or the address no longer names it. It returns nil when none happened.
func (s *Service) refuseStale(ctx context.Context, tx *txn, c Client, u *User, email, checked string,
	now time.Time) error {
	reason := ""
	switch {
	case u.IsDeleted():
		reason = "account deleted"
	case u.PasswordHash != checked:
		reason = "password changed during login"
	case u.Email != email:
		reason = "address changed during login"
	default:
		return nil
	}
	return tx.refuse(ctx, s.audit(now, c, EventLoginFailure, ResultFailure, u.ID, reason, nil), errInvalidCredentials)
}

// loginBarred answers a login for u, an account an administrator locked,
// as for any account that is not locked, and tells the lock only to the
// right password: a 423 at the first guess would tell anyone that the
// address has an account, and that it is barred (SPEC 6.6). Its wrong
// passwords count and lock on its row as any account's do (barredGuesses),
// shared by every instance, so the lock does not open the account to more
// guessing than an unlocked one; while they lock it, right and wrong
// passwords alike answer 423 unchecked. A right password is logged as
// such: the administrator learns that someone holds it.
func (s *Service) loginBarred(ctx context.Context, c Client, u *User, password string) error {
	if wait := s.barredGuesses(u, s.now()); wait > 0 {
		return s.refuseLocked(ctx, c, u.ID, s.lockedError(wait))
	}
	checked, email := u.PasswordHash, u.Email
	ok, _, err := s.passwords.Verify(ctx, password, checked)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *txn) error {
		u, err := tx.User(ctx, u.ID) // locked: the failures count one at a time
		if err != nil {
			return err
		}
		now := s.now()
		if err := s.refuseStale(ctx, tx, c, u, email, checked, now); err != nil {
			return err
		}
		refuse := func(reason string, err error) error {
			return tx.refuse(ctx, s.audit(now, c, EventLoginFailure, ResultFailure, u.ID, reason, nil), err)
		}
		switch {
		case !u.LockedByAdmin(now):
			// Unlocked, or run out, while we hashed: the account is
			// answered as any now, a right password with a retry (a
			// session needs the whole login), not with a lock that is gone.
			if _, err := s.liftExpired(ctx, tx, c, u, now); err != nil {
				return err
			}
			switch {
			case u.IsLocked(now): // by guesses meanwhile: right and wrong alike
				return refuse("account locked", s.lockedError(u.AccountLockedUntil.Sub(now)))
			case !ok:
				return s.failedPassword(ctx, tx, c, u, now, EventLoginFailure, errInvalidCredentials)
			}
			return refuse("account unlocked during login", errUnlockedMeanwhile)
		}
		return s.barredCheck(ctx, tx, c, u, ok, now)
	})
}

// barredCheck answers, in the transaction that locked u, a password check
// (ok: right) for u, whose administrator's lock is in force at now: 423
// with the lock's time for the right password, a counted failure for a
// wrong one, and 423 for both once its guesses lock it (barredGuesses).
func (s *Service) barredCheck(ctx context.Context, tx *txn, c Client, u *User, ok bool, now time.Time) error {
	refuse := func(reason string, err error, ctxt map[string]any) error {
		return tx.refuse(ctx, s.audit(now, c, EventLoginFailure, ResultFailure, u.ID, reason, ctxt), err)
	}
	if wait := s.barredGuesses(u, now); wait > 0 {
		// Locked by guesses while we hashed: right and wrong alike.
		return refuse("account locked", s.lockedError(wait), nil)
	}
	if ok {
		return refuse("account locked by an administrator; the password was right",
			s.lockedError(u.AccountLockedUntil.Sub(now)), nil)
	}
	if u.FailedLoginAttempts >= s.cfg.LockoutThreshold {
		u.clearFailures() // their lock has run out (barredGuesses)
	}
	locked := s.countFailure(u, now, false)
	if err := tx.UpdateUser(ctx, u); err != nil {
		return err
	}
	if locked {
		// The lock notice an unlocked account would be mailed uses up a
		// mail; a barred account is sent none.
		_ = s.lockNoticeAllowed(ctx, u.Email, u.EmailVerified)
	}
	return refuse(reasonWrongPassword, errInvalidCredentials, map[string]any{"failed_attempts": u.FailedLoginAttempts})
}

// errUnlockedMeanwhile answers a right password for an account whose
// administrator's lock was lifted while it was checked: the login is tried
// again.
var errUnlockedMeanwhile = &Error{Code: EInvalidCredentials, Message: "The account changed meanwhile; try again."}

// barredGuesses returns how long password checks of u, an account an
// administrator locked, stay refused after LockoutThreshold wrong
// passwords: the LockoutDuration from the last, as a brute-force lock
// would last, without touching the administrator's lock; 0 while they may
// go on.
func (s *Service) barredGuesses(u *User, now time.Time) time.Duration {
	if u.FailedLoginAttempts < s.cfg.LockoutThreshold {
		return 0
	}
	return max(u.LastFailedLogin.Add(s.cfg.LockoutDuration).Sub(now), 0)
}

// refuseLocked logs a login refused because its account (or, with user Nil,
// an email without one) is locked, and returns err.
func (s *Service) refuseLocked(ctx context.Context, c Client, user uuid.UUID, err error) error {
	if e := s.logEvent(ctx, s.audit(s.now(), c, EventLoginFailure, ResultFailure, user, "account locked", nil)); e != nil {
		return e
	}
	return err
}
