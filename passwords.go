package authd

import (
	"context"
	"time"

	"github.com/authd/authd/internal/pace"
	"github.com/google/uuid"
)

// ForgotPassword mails a reset link (valid one hour) to the account of
// email, voiding any older one. It answers alike for every address (SPEC
// §6.6). Returns EInvalid, ERateLimited, EUnavailable.
func (s *Service) ForgotPassword(ctx context.Context, c Client, email string) error {
	ctx, cancel := s.detach(ctx) // see mailRequest
	defer cancel()
	return s.mailRequest(ctx, c, "forgot", email, EventPasswordResetRequested, func(tx *txn, u *User, now time.Time) error {
		if u.LockedByAdmin(now) {
			// Only an administrator lifts this lock; a reset must not.
			return tx.CreateSecurityLog(ctx, s.audit(now, c, EventPasswordResetRequested, ResultFailure, u.ID,
				"account locked by an administrator", nil))
		}
		if err := newLinkMail(ctx, tx, u, PasswordReset, MailPasswordReset); err != nil {
			return err
		}
		if err := tx.enqueue(ctx, now, MailPasswordReset, u, time.Time{}); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventPasswordResetRequested, ResultSuccess, u.ID, "", nil))
	})
}

// mailRequest is the shape of the flows that mail a link to an address
// on request (resend verification, forgot password): limited per client IP
// (kind) and per address, whether or not it has an account (every mail
// counts), the same answer for every address (SPEC §6.6), and a row for
// every answer (SPEC 6.10): an unknown or erased address gets event's
// failure row, an account is send's to handle.
//
// Its callers detach at the top (as every flow that checks a credential
// does): a client that half-closes, its answer still readable, must neither
// skip the padding nor cut the transaction short.
//
// The same answer in the same time: a request that mails writes more
// than one that does not, so every answer is given at the deadline of
// those that mail (mailPace, at most maxPadding), the time left slept
// after the commit (together). Only requests that mail teach the pace, or a flood of
// requests for unknown addresses would pull the deadline below them; each
// moves it by an eighth of how far it strays from the average (pace.Learn,
// which also bounds an outlier), which once the average has settled is as
// often up as down.
func (s *Service) mailRequest(ctx context.Context, c Client, kind, email string, event EventType,
	send func(tx *txn, u *User, now time.Time) error) error {
	email, err := NormalizeEmail(email)
	if err != nil {
		return err
	}
	if err := s.limitIP(ctx, kind, c); err != nil {
		return err
	}
	if err := s.spendMail(ctx, email); err != nil {
		return err
	}
	// Counted before the lookup, as the address's own budget is, so that
	// the count says nothing of whether an account is there.
	subAddress := s.subAddressAllowed(ctx, email)
	err = s.together(ctx, s.mailPace.Deadline(), func() (pad bool, teach *pace.Pace, err error) {
		mailed := false
		err = s.inTx(ctx, func(tx *txn) error {
			now := s.now()
			u, err := tx.UserByEmail(ctx, email)
			if ErrorCode(err) == ENotFound || err == nil && u.IsDeleted() {
				return tx.CreateSecurityLog(ctx, s.audit(now, c, event, ResultFailure, uuid.Nil, "unknown email", nil))
			}
			if err != nil {
				return err
			}
			if !u.EmailVerified && !subAddress {
				return tx.CreateSecurityLog(ctx, s.audit(now, c, event, ResultFailure, u.ID, reasonSubAddressSpent, nil))
			}
			err = send(tx, u, now)
			mailed = tx.mailed
			return err
		})
		if err == nil && mailed {
			teach = &s.mailPace
		}
		return err == nil, teach, err
	})
	s.refundMail(ctx, err, email)
	return err
}

// ResetPassword sets a new password with a reset token: it ends every
// session, lifts a brute-force lock and, since the link proved the mailbox,
// verifies the address. It never lifts an administrator's lock. A password
// outside the policy leaves the token usable. Returns EInvalidToken,
// EWeakPassword, ERateLimited, EUnavailable.
func (s *Service) ResetPassword(ctx context.Context, c Client, token, newPassword string) error {
	if err := s.limitIP(ctx, "reset", c); err != nil {
		return err
	}
	// Check the token and the policy before spending a hash.
	v, err := s.usableToken(ctx, token, PasswordReset)
	if ErrorCode(err) == EInvalidToken {
		// Refused (and logged) in the transaction, where the reason is known.
		return s.inTx(ctx, func(tx *txn) error {
			_, _, err := s.consume(ctx, tx, c, token, PasswordReset, EventPasswordResetCompleted, s.now(), nil)
			if err == nil {
				err = errInvalidToken // redeemable after all: a race with a new link; the client retries
			}
			return err
		})
	}
	if err != nil {
		return err
	}
	u, err := s.store.User(ctx, v.UserID)
	if err != nil {
		return err
	}
	hash, err := s.newHash(ctx, newPassword, u.Email)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		u, _, err := s.consume(ctx, tx, c, token, PasswordReset, EventPasswordResetCompleted, now, nil)
		if err != nil {
			return err
		}
		now = s.now() // once the link and the user are held

		switch {
		case u.LockExpired(now) || u.AccountStatus == StatusLocked && u.LockReason == LockBruteForce:
			if err := s.unlock(ctx, tx, c, u, now, "password reset"); err != nil {
				return err
			}
		case u.LockedByAdmin(now):
			return s.refuseToken(ctx, tx, c, EventPasswordResetCompleted, u.ID, "account locked by an administrator", nil)
		}
		u.EmailVerified = true
		if u.AccountStatus == StatusInactive {
			u.AccountStatus = StatusActive
		}
		return s.setPassword(ctx, tx, c, u, hash, uuid.Nil, now, EventPasswordResetCompleted)
	})
}

// ChangePassword replaces the password of the token's user after checking
// the current one and, when the user has a second factor, proof, and ends
// every other session. Returns EInvalidCredentials (wrong current password
// or code), EMFARequired (no code for a user with a second factor),
// EWeakPassword, EInvalid, EAccountLocked, ERateLimited, EInvalidToken,
// EUnavailable.
func (s *Service) ChangePassword(ctx context.Context, c Client, a *AccessClaims, current, newPassword string,
	proof StepUp) error {
	if current != "" && s.passwords.Same(newPassword, current) {
		// Refused before any check: it would spend a second factor's code
		// and end the other sessions for no change.
		return errSamePassword
	}
	ctx, cancel := s.detach(ctx) // the checks finish whatever the client does
	defer cancel()
	checked, err := s.reauthenticateStepUp(ctx, c, a, current, "current_password", proof, EventPasswordChanged)
	if err != nil {
		return err
	}
	hash, err := s.newHash(ctx, newPassword, checked.Email)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *txn) error {
		u, now, err := s.recheck(ctx, tx, c, a, checked, proof, EventPasswordChanged)
		if err != nil {
			return err
		}
		// A reset link mailed before is void: whoever changes their
		// password (say, after a mail went astray) means to shut others
		// out, and the link would let its holder set the password again.
		// (A reset mail still queued goes too: setPassword.)
		if err := tx.DeleteVerificationTokens(ctx, u.ID, PasswordReset); err != nil {
			return err
		}
		return s.setPassword(ctx, tx, c, u, hash, a.SessionID, now, EventPasswordChanged)
	})
}

// errSamePassword refuses a password change to the password it names as
// the current one.
var errSamePassword = &Error{Code: EWeakPassword, Message: "The new password must differ from the current one.",
	Fields: []FieldError{{Field: "new_password", Message: "must differ from the current password"}}}

// reauthenticate checks the password of the token's user before a
// sensitive change. It is limited per user (reauthPerUser a minute), so that
// a stolen access token cannot guess at the login's rate nor one account
// hold the hashing workers; a wrong password counts toward the lock like a
// failed login and is logged as a failure of event, and while the account
// is locked no password is checked. Its callers have detached ctx (see
// detach). Returns EInvalidCredentials naming
// field, EAccountLocked, ERateLimited, EInvalidToken, EUnavailable.
func (s *Service) reauthenticate(ctx context.Context, c Client, a *AccessClaims, password, field string,
	event EventType) (*User, error) {
	u, ok, err := s.passwordAgain(ctx, c, a.UserID, password, event, nil)
	if err != nil || ok {
		return u, err
	}
	return nil, s.inTx(ctx, func(tx *txn) error {
		u, err := tx.User(ctx, u.ID)
		if err != nil {
			return err
		}
		now := s.now()
		if err := s.refuseIfBarred(ctx, tx, c, u, event, now); err != nil {
			return err
		}
		return s.failedPassword(ctx, tx, c, u, now, event, wrongPassword(field))
	})
}

// passwordAgain checks the password of user outside login, within the
// re-authentication budget (reauthPerUser a minute per user), and returns
// the user as read and whether the password was right; a locked account's
// is not checked (EAccountLocked, logged as a failure of event). before,
// when not nil, runs just before the hash, and its error stops the check.
// The caller counts a wrong one. Returns ERateLimited, EInvalidToken (no
// such user, erased or locked by an administrator), EAccountLocked,
// EUnavailable.
func (s *Service) passwordAgain(ctx context.Context, c Client, user uuid.UUID, password string,
	event EventType, before func() error) (*User, bool, error) {
	if err := s.limit(ctx, "reauth:"+user.String(), reauthPerUser, time.Minute); err != nil {
		return nil, false, err
	}
	u, err := s.tokenUser(s.store.User(ctx, user))
	if err != nil {
		return nil, false, err
	}
	if now := s.now(); u.IsLocked(now) {
		if err := s.logEvent(ctx, s.audit(now, c, event, ResultFailure, u.ID, "account locked", nil)); err != nil {
			return nil, false, err
		}
		return nil, false, s.lockedError(u.AccountLockedUntil.Sub(now))
	}
	if before != nil {
		if err := before(); err != nil {
			return nil, false, err
		}
	}
	ok, _, err := s.passwords.Verify(ctx, password, u.PasswordHash)
	if err != nil {
		return nil, false, err
	}
	return u, ok, nil
}

// wrongPassword is EInvalidCredentials naming field.
func wrongPassword(field string) *Error {
	return &Error{Code: EInvalidCredentials, Message: "The password is incorrect.",
		Fields: []FieldError{{Field: field, Message: "is incorrect"}}}
}

// stillChecked fails a sensitive change whose password check, made before
// its transaction, no longer holds for u (locked): the account was locked
// meanwhile (a right guess among parallel wrong ones must not succeed after
// the lock, nor be told apart from them), or its password changed.
func (s *Service) stillChecked(ctx context.Context, tx *txn, c Client, u *User, checkedHash string,
	event EventType, now time.Time) error {
	if err := s.refuseIfBarred(ctx, tx, c, u, event, now); err != nil {
		return err
	}
	if u.PasswordHash != checkedHash {
		return tx.refuse(ctx, s.audit(now, c, event, ResultFailure, u.ID, "password changed meanwhile", nil), errPasswordChanged)
	}
	return nil
}

// errPasswordChanged answers a sensitive change whose password check was
// overtaken by another change of the password, which may have ended the
// caller's session.
var errPasswordChanged = &Error{Code: EInvalidCredentials,
	Message: "The password was changed meanwhile; sign in again with the new one."}

// newHash applies the policy to a new password and hashes it.
func (s *Service) newHash(ctx context.Context, password, email string) (string, error) {
	if err := s.checkPassword("new_password", password, email); err != nil {
		return "", err
	}
	return s.passwords.Hash(ctx, password)
}

// setPassword stores a new hash for u (with whatever else the caller
// changed), ends every session but keep, withdraws queued reset mails and
// an address change,
// voids what proved the old password (sign-ins awaiting their second
// factor, a TOTP enrolment not confirmed), mails the notice and logs event.
func (s *Service) setPassword(ctx context.Context, tx *txn, c Client, u *User, hash string, keep uuid.UUID,
	now time.Time, event EventType) error {
	u.PasswordHash, u.LastPasswordChange, u.UpdatedAt = hash, now, now
	// Wrong passwords no longer matter. After a reset, wrong codes still
	// count toward the lock, as codes, and a lock set past the password
	// (CodesLockedUntil) lasts: a reset proves the mailbox, not the second
	// factor, and whoever holds both would otherwise get fresh guesses at a
	// code with every reset. Codes they stay: counted as plain failures, a
	// second reset would forget them, and one wrong password would turn
	// them into an ordinary lock that forgets them when it ends; so a lock
	// that any failure then sets is past the password (lockTerms), as
	// before the reset. A change in a session is made with the current
	// password and the second factor, and whoever guessed codes does not
	// know the new password: their codes stay only as plain failures, so
	// that an outsider's wrong password cannot raise a lock past a password
	// no one else knows (codes refused, a notice saying it was passed).
	// (A lock the reset lifts starts the whole count over, as one that runs
	// out does: unlock.)
	u.FailedLoginAttempts = u.FailedCodeAttempts
	if event == EventPasswordChanged {
		u.FailedCodeAttempts = 0
	}
	if err := tx.UpdateUser(ctx, u); err != nil {
		return err
	}
	ids, err := s.endUserSessions(ctx, tx, u.ID, keep, now, string(event))
	if err != nil {
		return err
	}
	// Voided here, under the user's lock, rather than told apart later by
	// comparing their times with the change's: two instances' clocks wrote
	// those, and a challenge from one ahead outlived a reset on one behind.
	// (Voided, not deleted: whoever presents one is logged for the user.)
	if err := tx.VoidOpenMFAChallenges(ctx, u.ID, MFAChallengeVoided); err != nil {
		return err
	}
	factors, err := tx.Factors(ctx, u.ID)
	if err != nil {
		return err
	}
	if err := dropEnrolments(ctx, tx, factors); err != nil {
		return err
	}
	if err := voidRegistrations(ctx, tx, u.ID, now); err != nil {
		return err
	}
	// A reset mail still queued (a retry, a second request), or dead and
	// revived later, would mint a fresh link when sent: the new password
	// makes it void, as it does the links already mailed.
	if err := tx.WithdrawMails(ctx, u.ID, MailPasswordReset); err != nil {
		return err
	}
	// An address change asked for under the old password goes too: it
	// may be an intruder's, whom the new password means to shut out.
	if err := s.voidEmailChange(ctx, tx, u); err != nil {
		return err
	}
	if err := tx.enqueue(ctx, now, MailPasswordChanged, u, time.Time{}); err != nil {
		return err
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, event, ResultSuccess, u.ID, "",
		map[string]any{"sessions_revoked": len(ids)}))
}

// UpdateConsent records the user's consent (or its withdrawal) with the
// time. Returns EInvalidToken, EUnavailable.
func (s *Service) UpdateConsent(ctx context.Context, c Client, a *AccessClaims, consent bool) (*User, error) {
	var out *User
	err := s.inTx(ctx, func(tx *txn) error {
		u, err := tx.User(ctx, a.UserID)
		if err != nil {
			return err
		}
		now := s.now()
		if u.IsDeleted() {
			return errInvalidToken
		}
		previous := u.ConsentStatus
		u.ConsentStatus, u.ConsentTimestamp, u.UpdatedAt = consent, now, now
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		out = u
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventConsentUpdated, ResultSuccess, u.ID, "",
			map[string]any{"consent": consent, "previous": previous}))
	})
	return out, err
}
