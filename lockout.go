package authd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Lockouts hold the brute-force locks of emails that have no account, in the
// rate-limit store, so that such an email fails and locks exactly like one
// with an account and a 423 says nothing about existence (SPEC 6.7).
type Lockouts interface {
	// LockedFor returns how long key stays locked; 0 when it is not.
	LockedFor(ctx context.Context, key string) (time.Duration, error)
	// Fail counts a failure for key, in one step with reading its lock: a
	// failure while key is locked does not count and returns how long the
	// lock lasts (lockedFor > 0). The threshold-th failure locks key for
	// lock, starts the count afresh and reports locked. A count with no new
	// failure for forget is dropped.
	Fail(ctx context.Context, key string, threshold int, lock, forget time.Duration) (lockedFor time.Duration, locked bool, err error)
}

// failureMemory is how long failed password checks are remembered after the
// last one, for accounts (users.last_failed_login_timestamp) and for emails
// without one (the rate-limit store) alike, so that spacing guesses cannot
// tell them apart, and the store stays bounded.
const failureMemory = 24 * time.Hour

// ghostLocked returns how long the email key without an account stays
// locked. A failing store counts as unlocked: it must not lock everyone out.
func (s *Service) ghostLocked(ctx context.Context, key string) time.Duration {
	if s.lockouts == nil {
		return 0
	}
	wait, err := s.lockouts.LockedFor(ctx, key)
	if err != nil {
		s.logger.WarnContext(ctx, "lockout store failed", "err", err)
		return 0
	}
	return wait
}

// ghostFailed counts a failed login for the email key without an account:
// it returns how long the email was already locked (the failure did not
// count), or whether this failure locked it.
func (s *Service) ghostFailed(ctx context.Context, key string) (lockedFor time.Duration, locked bool) {
	if s.lockouts == nil {
		return 0, false
	}
	lockedFor, locked, err := s.lockouts.Fail(ctx, key, s.cfg.LockoutThreshold, s.cfg.LockoutDuration, failureMemory)
	if err != nil {
		s.logger.WarnContext(ctx, "lockout store failed", "err", err)
	}
	return lockedFor, locked
}

// failedPassword records a wrong password for u, given at login or when
// re-authenticating for event, and fails the flow with err. The failure
// counts toward the lock wherever the password was checked; at the threshold
// the account is locked for the lockout duration. A brute-force lock ends no
// session: it stops password checks only, so that whoever knows an address
// cannot cut its owner off.
func (s *Service) failedPassword(ctx context.Context, tx *txn, c Client, u *User, now time.Time,
	event EventType, err error) error {
	return s.failedCheck(ctx, tx, c, u, now, event, reasonWrongPassword, lockByPasswords, err)
}

// Why failedCheck's lock was set: wrong passwords, or wrong second-factor
// codes (given past the password, or in a signed-in session), or wrong
// passwords the last of a count that wrong codes took part in
// (users.failed_code_attempts).
const (
	lockByPasswords  = "too many failed password checks"
	lockByCodes      = "too many failed second-factor checks"
	lockPastPassword = "too many failed checks after the password was passed"
)

// The reasons of the rows of failed checks that count (failedCheck).
const (
	reasonWrongPassword = "invalid password"
	reasonWrongCode     = "invalid code"
)

// failedCheck records a failed check of u's credentials (a password or a
// second-factor code) as a failure of event for reason, counting toward
// the one lock of SPEC 6.7, and fails the flow with err. Passwords and
// codes share the counter, so that guessing one cannot start afresh on the
// other; only a whole successful login resets it.
func (s *Service) failedCheck(ctx context.Context, tx *txn, c Client, u *User, now time.Time,
	event EventType, reason, lockReason string, err error) error {
	if u.IsDeleted() { // erased meanwhile: nothing left to count or lock (refuseIfBarred)
		return s.refuseErased(ctx, tx, c, u, event, now)
	}
	locked := s.countFailure(u, now, lockReason == lockByCodes)
	afterCodes := false
	if locked {
		var codesFor time.Duration
		var err error
		if lockReason, afterCodes, codesFor, err = s.lockTerms(ctx, tx, u, now, lockReason); err != nil {
			return err
		}
		u.AccountStatus = StatusLocked
		u.AccountLockedUntil = now.Add(s.cfg.LockoutDuration)
		u.LockReason = LockBruteForce
		if until := now.Add(codesFor); codesFor > 0 && until.After(u.CodesLockedUntil) {
			u.CodesLockedUntil = until
		}
	}
	if err := tx.UpdateUser(ctx, u); err != nil {
		return err
	}
	if locked {
		if err := s.lockNotice(ctx, tx, u, now, afterCodes, true); err != nil {
			return err
		}
		if err := tx.CreateSecurityLog(ctx, s.audit(now, c, EventAccountLocked, ResultSuccess, u.ID,
			lockReason, map[string]any{"until": u.AccountLockedUntil,
				"failed_attempts": u.FailedLoginAttempts})); err != nil {
			return err
		}
	}
	return tx.refuse(ctx, s.audit(now, c, event, ResultFailure, u.ID, reason,
		map[string]any{"failed_attempts": u.FailedLoginAttempts}), err)
}

// lockTerms returns the terms of the lock failedCheck sets on u at now for
// reason (lockByPasswords or lockByCodes, by the last failure's kind):
// its reason as logged, lockPastPassword for wrong passwords in a count
// that wrong codes took part in (FailedCodeAttempts); whether its notice
// says the password was right (a lock set past the password, or while a
// login that passed it awaits its code: passwordPassedSince); and, for a
// lock set past the password, how long second-factor codes are refused
// (pastPasswordLock; 0 otherwise). The account's own lock lasts the
// lockout duration whatever set it, as SPEC 6.7 says: logins read it, and
// a longer one would tell anyone that the address has an account and that
// someone passed its password.
func (s *Service) lockTerms(ctx context.Context, tx *txn, u *User, now time.Time, reason string) (logged string,
	afterCodes bool, codesFor time.Duration, err error) {
	if reason == lockByPasswords && u.FailedCodeAttempts > 0 {
		reason = lockPastPassword
	}
	if reason == lockByPasswords {
		afterCodes, err = s.passwordPassedSince(ctx, tx, u, now)
		return reason, afterCodes, 0, err
	}
	codesFor, err = s.pastPasswordLock(ctx, tx, u, now)
	return reason, true, codesFor, err
}

// refuseCodes refuses, logged as a failure of event, a second-factor code
// for u while codes are locked at now (CodesLockedUntil: a lock set past
// the password), without checking it; nil when they are not. Only whoever
// passed the password, or holds a session, is ever asked for a code.
func (s *Service) refuseCodes(ctx context.Context, tx *txn, c Client, u *User, event EventType, now time.Time) error {
	if !now.Before(u.CodesLockedUntil) {
		return nil
	}
	return tx.refuse(ctx, s.audit(now, c, event, ResultFailure, u.ID, "second-factor codes locked", nil),
		s.lockedError(u.CodesLockedUntil.Sub(now)))
}

// pastPasswordLock returns how long a lock set past the password (by wrong
// codes, or wrong passwords in a count with wrong codes) refuses codes: the
// lockout duration, doubled for each such lock in the week before now
// (since an administrator's unlock, if later), up to maxPastPasswordLock. Whoever
// sets such locks holds the password (or a session), and each lock's end
// gives them LockoutThreshold more guesses at a six-digit code: at a fixed
// duration that is 480 guesses a day with the defaults, about 40 % odds of
// a right TOTP code within a year; doubled each time, a handful a day. An
// outsider's wrong passwords lock for the fixed duration, as SPEC 6.7
// says. A week without such a lock starts over (the owner's own mistyped
// codes do not add up over months), and so does an administrator's unlock;
// a new password does not: a reset proves the mailbox, and whoever holds
// it and the password would start over with every reset.
func (s *Service) pastPasswordLock(ctx context.Context, tx *txn, u *User, now time.Time) (time.Duration, error) {
	since, err := s.adminUnlockSince(ctx, tx, u.ID, now.Add(-pastPasswordMemory))
	if err != nil {
		return 0, err
	}
	locks, err := tx.SecurityLogs(ctx, SecurityLogFilter{UserID: u.ID, EventType: EventAccountLocked,
		Since: since, Limit: MaxListLimit})
	if err != nil {
		return 0, err
	}
	lasts := s.cfg.LockoutDuration
	for _, l := range locks {
		if lasts >= maxPastPasswordLock {
			break
		}
		if l.FailureReason == lockByCodes || l.FailureReason == lockPastPassword {
			lasts *= 2
		}
	}
	return max(min(lasts, maxPastPasswordLock), s.cfg.LockoutDuration), nil
}

// adminUnlockSince returns the time of the user's latest unlock by an
// administrator at or after since (the user's copy of its admin_action
// row, written whether or not the account was locked), or since. Every
// page of the user's admin actions is read, newest first, until one is an
// unlock: an administrator's reads of the account (its log, its factors)
// are actions too, and must not push the unlock out of sight.
func (s *Service) adminUnlockSince(ctx context.Context, tx *txn, user uuid.UUID, since time.Time) (time.Time, error) {
	f := SecurityLogFilter{UserID: user, EventType: EventAdminAction, Since: since, Limit: MaxListLimit}
	for {
		actions, err := tx.SecurityLogs(ctx, f)
		if err != nil {
			return since, err
		}
		for _, a := range actions { // newest first
			if a.AdditionalContext["action"] == "unlock" {
				return a.Timestamp, nil
			}
		}
		if len(actions) < f.Limit {
			return since, nil
		}
		last := actions[len(actions)-1]
		f.After = &Cursor{Time: last.Timestamp, ID: last.ID}
	}
}

// pastPasswordMemory is how far back pastPasswordLock counts locks.
const pastPasswordMemory = 7 * 24 * time.Hour

// maxPastPasswordLock bounds how long a lock set past the password lasts
// (pastPasswordLock), unless the lockout duration is longer.
const maxPastPasswordLock = 24 * time.Hour

// lockNotice queues in tx the notice of u's brute-force lock, set at now.
// It says the password was right when someone passed it (afterCodes: the
// last failure was a code, or passwordPassedSince), and then goes out
// whatever the address's mail budget (which anyone can spend with
// forgot-password): the owner learns to change the password; such locks
// come at most once per lockout duration. A lock a request set (spend)
// spends the budget all the same, as a lock of an address without an
// account does (loginUnknown), so that the budget tells nothing of the
// account; one that an administrator's lock leaves (liftExpired) spent it
// when the guesses locked the account (barredCheck) and is sent as is.
func (s *Service) lockNotice(ctx context.Context, tx *txn, u *User, now time.Time, afterCodes, spend bool) error {
	allowed := !spend || s.lockNoticeAllowed(ctx, u.Email, u.EmailVerified)
	if !allowed && !afterCodes {
		return nil
	}
	return tx.enqueueMail(ctx, now, u, &OutboxMail{Kind: MailAccountLocked, Until: latest(u.AccountLockedUntil, u.CodesLockedUntil),
		AfterCodes: afterCodes})
}

// lockNoticeAllowed counts a lock's notice to email on the address's
// budget (noticeAllowed) and its mailbox's (subAddressAllowed), both
// whatever the account, and reports whether it may go out: past the
// mailbox's, not to an account not verified (verified false), which
// strangers can make at name+1@, name+2@, … and lock by failed logins.
func (s *Service) lockNoticeAllowed(ctx context.Context, email string, verified bool) bool {
	notice := s.noticeAllowed(ctx, email)
	sub := s.subAddressAllowed(ctx, email)
	return notice && (verified || sub)
}

// passwordPassedSince reports, in tx, whether a login to u passed the
// password since u last signed in and its second factor is still awaited
// (an open challenge, within its few minutes): whoever made it knows the
// password, so a lock that a wrong password sets now (the last of a count
// that held wrong codes, say) is told as one codes set. A challenge the
// owner abandoned long ago does not count: an outsider's guesses could
// otherwise mail the owner past the budget, lock after lock.
func (s *Service) passwordPassedSince(ctx context.Context, tx *txn, u *User, now time.Time) (bool, error) {
	since := now.Add(-failureMemory)
	if u.LastLoginTimestamp.After(since) {
		since = u.LastLoginTimestamp
	}
	return tx.OpenChallengeSince(ctx, u.ID, since, now)
}

// latest is the later of a and b: a lock's notice tells when sign-in works
// again, the second factor's codes included.
func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// codeRight records, in tx, a right second factor from u in a signed-in
// session (a step-up's code or passkey, a TOTP confirmation): the wrong
// codes counted before it were its owner's, so the count no longer says
// that someone past the password is guessing codes (lockTerms); the count
// itself stands, as only a whole login resets it. Not while a sign-in that
// passed the password awaits its code (passwordPassedSince): the codes may
// be that sign-in's, someone else's guesses.
func (s *Service) codeRight(ctx context.Context, tx *txn, u *User, now time.Time) error {
	if u.FailedCodeAttempts == 0 {
		return nil
	}
	if guessing, err := s.passwordPassedSince(ctx, tx, u, now); err != nil || guessing {
		return err
	}
	u.FailedCodeAttempts, u.UpdatedAt = 0, now
	return tx.UpdateUser(ctx, u)
}

// countFailure counts a failed check on u at now (code: a wrong
// second-factor code) and reports whether the count reached the lockout
// threshold. The failures before it are forgotten failureMemory after the
// last one, unless wrong codes are among them: whoever gave those passed
// the password (or holds a session), and, forgotten, a day's guesses one
// short of the threshold would go on for ever under the lock and its
// notice, which tells the owner to change the password. Such a count ends
// as a whole sign-in, a right code in the owner's session (codeRight, for
// the codes), a lock's end or an administrator ends it.
func (s *Service) countFailure(u *User, now time.Time, code bool) bool {
	if now.Sub(u.LastFailedLogin) >= failureMemory && u.FailedCodeAttempts == 0 {
		u.clearFailures() // the earlier failures are forgotten
	}
	u.FailedLoginAttempts++
	if code {
		u.FailedCodeAttempts++
	}
	u.LastFailedLogin, u.UpdatedAt = now, now
	return u.FailedLoginAttempts >= s.cfg.LockoutThreshold
}

// reasonLockExpired is why a timed lock is lifted when it has run out.
const reasonLockExpired = "lock expired"

// unlock ends a lock of either kind: the account returns to active (or
// inactive while its email is unverified and verification is required) with
// a clean counter.
func (s *Service) unlock(ctx context.Context, tx *txn, c Client, u *User, now time.Time, reason string) error {
	u.AccountStatus = StatusActive
	if !u.EmailVerified && s.cfg.RequireVerifiedEmail {
		u.AccountStatus = StatusInactive
	}
	u.AccountLockedUntil = time.Time{}
	u.LockReason = ""
	u.clearFailures()
	u.UpdatedAt = now
	if err := tx.UpdateUser(ctx, u); err != nil {
		return err
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, EventAccountUnlocked, ResultSuccess, u.ID, reason, nil))
}

// liftExpired ends u's timed lock if it has run out at now, and reports
// whether it unlocked u. An administrator's lock that runs out while the
// guesses made under it still lock the account (guessesOutlast) gives way
// to the brute-force lock those guesses earned, for the rest of its time,
// instead of unlocking: its end must not hand whoever guessed a fresh
// count. That is logged as account_locked with no client (the request that
// finds it did not cause it), and mailed as any brute-force lock is
// (lockNotice), which the administrator's lock had kept from the owner.
func (s *Service) liftExpired(ctx context.Context, tx *txn, c Client, u *User, now time.Time) (bool, error) {
	if !u.LockExpired(now) {
		return false, nil
	}
	wait := s.guessesOutlast(u, now)
	if wait == 0 {
		return true, s.unlock(ctx, tx, c, u, now, reasonLockExpired)
	}
	u.AccountLockedUntil, u.LockReason, u.UpdatedAt = now.Add(wait), LockBruteForce, now
	if err := tx.UpdateUser(ctx, u); err != nil {
		return false, err
	}
	afterCodes, err := s.passwordPassedSince(ctx, tx, u, now)
	if err != nil {
		return false, err
	}
	if err := s.lockNotice(ctx, tx, u, now, afterCodes, false); err != nil {
		return false, err
	}
	return false, tx.CreateSecurityLog(ctx, s.audit(now, Client{}, EventAccountLocked, ResultSuccess, u.ID,
		"the administrator's lock ran out; too many failed password checks under it",
		map[string]any{"until": u.AccountLockedUntil, "failed_attempts": u.FailedLoginAttempts}))
}

// guessesOutlast returns how long the guesses made under u's timed
// administrator's lock, run out at now, still lock it (barredGuesses); 0
// when the lock has not run out, is a brute-force one, or they do not.
func (s *Service) guessesOutlast(u *User, now time.Time) time.Duration {
	if !u.LockExpired(now) || u.LockReason == LockBruteForce {
		return 0
	}
	return s.barredGuesses(u, now)
}

// unlockBatch bounds the accounts one UnlockExpired lifts; the rest wait
// for the next sweep.
const unlockBatch = 100

// UnlockExpired lifts the timed locks that have run out, as the owner's
// next attempt would (liftExpired: account_unlocked, the failure count
// back to zero; or an administrator's lock's guesses' lock), so that the
// account's status and the trail say so without waiting for that attempt
// (SPEC 6.7: a lock "unlocks on its own"). Only unlocks are counted. Each account is
// re-read and locked in its own transaction, so instances sweeping at once
// or a login lifting the same lock write one row. An account that cannot
// be unlocked does not hold up the others. Returns how many it lifted, and
// the failures joined; EUnavailable.
func (s *Service) UnlockExpired(ctx context.Context) (int, error) {
	ids, err := s.store.ExpiredLocks(ctx, s.now(), unlockBatch)
	if err != nil {
		return 0, err
	}
	lifted := 0
	var failed []error
	for _, id := range ids {
		if err := ctx.Err(); err != nil { // given up (the sweep's timeout): said once, not per account
			failed = append(failed, err)
			break
		}
		done := false
		err := s.inTx(ctx, func(tx *txn) error {
			u, err := tx.User(ctx, id)
			if ErrorCode(err) == ENotFound {
				return nil
			}
			if err != nil {
				return err
			}
			now := s.now()
			done, err = s.liftExpired(ctx, tx, Client{}, u, now) // lifted (or locked again) meanwhile: nothing
			return err
		})
		if err != nil {
			failed = append(failed, fmt.Errorf("unlocking %s: %w", id, err))
			continue
		}
		if done {
			lifted++
		}
	}
	return lifted, errors.Join(failed...)
}

// refuseIfBarred refuses, logged as a failure of event, a password or code
// check for u while its account is locked at now (without checking
// anything: a lock must not confirm a guess); nil when it is not locked. A
// lock that has expired is lifted first (liftExpired: account_unlocked, the
// failure count back to zero, unless its guesses outlast it), so the next
// failure starts a new count rather than locking again at once. An account
// erased since the flow first read it is refused as its token is
// (refuseErased).
func (s *Service) refuseIfBarred(ctx context.Context, tx *txn, c Client, u *User, event EventType, now time.Time) error {
	if u.IsDeleted() {
		return s.refuseErased(ctx, tx, c, u, event, now)
	}
	if _, err := s.liftExpired(ctx, tx, c, u, now); err != nil {
		return err
	}
	if !u.IsLocked(now) {
		return nil
	}
	return tx.refuse(ctx, s.audit(now, c, event, ResultFailure, u.ID, "account locked", nil),
		s.lockedError(u.AccountLockedUntil.Sub(now)))
}

// refuseErased fails a check for an account erased since the flow first
// read it as its token fails (EInvalidToken), logged as a failure of event
// (the row keeps no client: CreateSecurityLog) and counting nothing: a
// failure counted on it would lock it, and the lock's end would make it an
// account again.
func (s *Service) refuseErased(ctx context.Context, tx *txn, c Client, u *User, event EventType, now time.Time) error {
	return tx.refuse(ctx, s.audit(now, c, event, ResultFailure, u.ID, "account deleted", nil), errInvalidToken)
}

// lockedError is EAccountLocked with RetryAfter: wait, the rest of the lock,
// or the lockout duration for a lock without an end (an administrator's),
// as a hint of when to try again.
func (s *Service) lockedError(wait time.Duration) *Error {
	if wait <= 0 {
		wait = s.cfg.LockoutDuration
	}
	return &Error{Code: EAccountLocked, Message: "The account is locked; try again later.", RetryAfter: wait}
}
