package authd

import (
	"time"

	"github.com/google/uuid"
)

// MaxEmailLength is the longest address accepted (RFC 5321 path limit).
const MaxEmailLength = 254

// User is an account (table users). Zero times stand for NULL.
type User struct {
	ID                    uuid.UUID
	Email                 string // normalised: lower case; a tombstone once deleted
	PasswordHash          string // PHC string; empty once the account is erased
	EmailVerified         bool
	AccountStatus         AccountStatus
	FailedLoginAttempts   int
	FailedCodeAttempts    int        // of FailedLoginAttempts, the wrong second-factor codes
	CodesLockedUntil      time.Time  // second-factor codes refused until then; zero: none
	AccountLockedUntil    time.Time  // zero: no timed lock
	LockReason            LockReason // who locked the account; "" while it is not locked
	LastFailedLogin       time.Time  // the last wrong password; zero: none on record
	RegistrationTimestamp time.Time
	LastLoginTimestamp    time.Time // zero: never logged in
	LastPasswordChange    time.Time
	ConsentTimestamp      time.Time // zero: no consent on record
	ConsentStatus         bool
	CreatedAt             time.Time
	UpdatedAt             time.Time
}

// clearFailures starts the failure count of SPEC 6.7 afresh.
func (u *User) clearFailures() { u.FailedLoginAttempts, u.FailedCodeAttempts = 0, 0 }

// LockReason says who locked an account, since the two locks differ (SPEC
// 6.7): a brute-force lock stops password logins only and a password reset
// lifts it; an administrator's lock ends the sessions and only an
// administrator lifts it.
type LockReason string

// The reasons for a lock.
const (
	LockBruteForce LockReason = "brute_force"
	LockAdmin      LockReason = "admin"
)

// IsLocked reports whether the account refuses logins at now: a timed lock
// that has not yet run out, or a lock without an end time (an administrator's).
// A timed lock whose time has passed is no longer a lock; LockExpired tells
// the flows to record the unlock.
func (u *User) IsLocked(now time.Time) bool {
	if u.AccountLockedUntil.After(now) {
		return true
	}
	return u.AccountStatus == StatusLocked && u.AccountLockedUntil.IsZero()
}

// LockExpired reports whether the account is still marked locked although its
// timed lock ran out at or before now, so that an automatic unlock is due.
func (u *User) LockExpired(now time.Time) bool {
	return u.AccountStatus == StatusLocked &&
		!u.AccountLockedUntil.IsZero() && !u.AccountLockedUntil.After(now)
}

// LockedByAdmin reports whether an administrator's lock is in force at now.
// Such an account's tokens are refused (its sessions were ended when it was
// locked); a brute-force lock leaves them working. A lock that does not say
// it came from brute force (one written by hand, or by an older version)
// counts as an administrator's: only an administrator lifts it.
func (u *User) LockedByAdmin(now time.Time) bool {
	return u.IsLocked(now) && u.LockReason != LockBruteForce
}

// IsActive reports whether the account is active: verified (or not required
// to be), neither locked nor deleted.
func (u *User) IsActive() bool { return u.AccountStatus == StatusActive }

// IsDeleted reports whether the account was erased.
func (u *User) IsDeleted() bool { return u.AccountStatus == StatusDeleted }
