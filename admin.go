package authd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"
)

// The administrator's operations (SPEC §5 admin listener, §3 `authd admin`).
// Each, reads of personal data included, writes an admin_action row saying
// what was done (logAdmin).

// Users lists users matching f, newest first, one page, and logs the
// listing as list_users with its filters. EInvalid (limit, an email
// filter that is not PlainText), EUnavailable.
func (s *Service) Users(ctx context.Context, c Client, f UserFilter) (Page[*User], error) {
	limit, err := ListLimit(f.Limit)
	if err != nil {
		return Page[*User]{}, err
	}
	if !PlainText(f.Email) {
		return Page[*User]{}, invalidField("email", "must be UTF-8 text without control characters")
	}
	f.Email = norm.NFC.String(f.Email) // as addresses are stored
	if len(f.Email) > MaxEmailLength { // no address holds it (and SQLite refuses a long LIKE pattern)
		return Page[*User]{}, invalidField("email", fmt.Sprintf("must be at most %d bytes long", MaxEmailLength))
	}
	filters := map[string]any{}
	if f.Email != "" {
		// Not the text: an address searched for must not outlive its
		// owner's erasure in the audit trail.
		filters["email_filter"] = true
	}
	if f.Status != "" {
		filters["status"] = string(f.Status)
	}
	f.Limit = limit + 1
	rows, err := listRead(ctx, s.listings, f, s.store.Users)
	if err != nil {
		return Page[*User]{}, err
	}
	p := page(rows, limit, func(u *User) Cursor { return Cursor{Time: u.CreatedAt, ID: u.ID} })
	return listed(ctx, s, c, uuid.Nil, "list_users", filters, p)
}

// User returns a user by id and logs the read as show_user. ENotFound when
// there is none, EUnavailable.
func (s *Service) User(ctx context.Context, c Client, id uuid.UUID) (*User, error) {
	u, err := s.store.User(ctx, id)
	if ErrorCode(err) == ENotFound {
		return nil, errNoUser
	}
	if err != nil {
		return nil, err
	}
	if err := s.auditRead(ctx, c, id, map[string]any{"action": "show_user"}); err != nil {
		return nil, err
	}
	return u, nil
}

// SecurityLogs lists security events matching f, newest first, one page,
// and logs the listing as list_security_logs with its filters; filtered by
// user, it concerns that user. EInvalid (limit, a time past the year 9999),
// EUnavailable.
func (s *Service) SecurityLogs(ctx context.Context, c Client, f SecurityLogFilter) (Page[*SecurityLog], error) {
	// The filters go into the audit row, as JSON: an offset of 24 hours,
	// which time.Parse takes and RFC 3339 does not, cannot be written.
	f.Since, f.Until = f.Since.UTC(), f.Until.UTC()
	for field, t := range map[string]time.Time{"since": f.Since, "until": f.Until} {
		if !t.IsZero() && !writableYear(t) {
			return Page[*SecurityLog]{}, invalidField(field, "must be a time from the year 1 to 9999")
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		// An empty list would read as "nothing happened"; it is a mistake.
		return Page[*SecurityLog]{}, invalidField("until", "must be after since")
	}
	p, err := s.securityLogs(ctx, s.listings, f)
	if err != nil {
		return Page[*SecurityLog]{}, err
	}
	filters := map[string]any{}
	target := uuid.Nil
	if f.UserID != uuid.Nil {
		filters["user_id"] = f.UserID.String()
		// The user's copy of the row needs the user; an id that is no one's
		// (an empty list) is still logged, on the administrator's row.
		switch _, err := s.store.User(ctx, f.UserID); ErrorCode(err) {
		case "":
			target = f.UserID
		case ENotFound:
		default:
			return Page[*SecurityLog]{}, err
		}
	}
	if f.EventType != "" {
		filters["event_type"] = string(f.EventType)
	}
	if f.Result != "" {
		filters["result"] = string(f.Result)
	}
	if !f.Since.IsZero() {
		filters["since"] = f.Since
	}
	if !f.Until.IsZero() {
		filters["until"] = f.Until
	}
	return listed(ctx, s, c, target, "list_security_logs", filters, p)
}

// listTimeout bounds a listing's read (users, security logs, a user's own
// log; a variable for tests): a filter that a large table's indexes serve
// badly (a probe: 20–30 s on two million rows, for an event and a result
// that few rows match) answers 503 with a hint within it, before the HTTP
// server's write timeout (30 s) cuts the answer off unsaid, and the
// database stops working on it.
var listTimeout = 15 * time.Second

// adminListingsAtOnce bounds the administrators' listings that read at
// once. A filter the indexes serve badly reads for up to listTimeout, on a
// core and (PostgreSQL) a pooled connection: a probe ran sixteen such at
// once beside a light load, and all of them ran into the bound (503) while
// they held the CPU from the flows. Past the bound a listing waits for a
// slot, within its listTimeout; a user's own log, read by the user's
// index, takes none.
const adminListingsAtOnce = 4

// listRead reads a listing's rows for filter f within listTimeout, once
// one of slots is free when slots is not nil (the wait counts toward
// listTimeout; past it, ErrBusy).
func listRead[F, T any](ctx context.Context, slots chan struct{}, f F, read func(context.Context, F) ([]T, error)) ([]T, error) {
	rctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	if slots != nil {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		case <-rctx.Done():
			if ctx.Err() != nil {
				return nil, &Error{Code: EUnavailable, Message: "The request ended.", Err: ctx.Err()}
			}
			return nil, &Error{Code: EUnavailable, Message: "Too many listings are running; try again shortly.",
				RetryAfter: time.Second, Err: ErrBusy}
		}
	}
	rows, err := read(rctx, f)
	if err != nil && errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, &Error{Code: EUnavailable, Err: err,
			Message: "The listing took too long; narrow it (a user, an event, a time range) or ask for fewer rows.",
			Hint: fmt.Sprintf("a listing's read passed %s: filters the indexes serve badly on a large table; "+
				"give since/until or user_id with them", listTimeout)}
	}
	return rows, err
}

// listed logs an administrator's listing, with its filters and how many
// rows it shows, and returns its page: a listing that cannot be logged is
// not shown.
func listed[T any](ctx context.Context, s *Service, c Client, target uuid.UUID, action string,
	filters map[string]any, p Page[T]) (Page[T], error) {
	details := map[string]any{"action": action, "filters": filters, "count": len(p.Items)}
	if err := s.auditRead(ctx, c, target, details); err != nil {
		return Page[T]{}, err
	}
	return p, nil
}

// auditRead logs an administrator's read of personal data, before its
// result is handed out.
func (s *Service) auditRead(ctx context.Context, c Client, target uuid.UUID, details map[string]any) error {
	return s.inTx(ctx, func(tx *txn) error { return s.logAdmin(ctx, tx, s.now(), c, target, details) })
}

// logAdmin writes what an administrator did (details["action"]) in tx.
//
// The administrator's row carries their IP address and browser and, as
// target_user_id in its context, the user the action concerned; it belongs
// to no user, so only the admin listings show it, and erasing the user
// leaves the record of who did what from where. The user gets a copy without
// the administrator's client: their own security log and export say what
// was done to their account, and hold no one else's personal data.
func (s *Service) logAdmin(ctx context.Context, tx *txn, now time.Time, c Client, target uuid.UUID,
	details map[string]any) error {
	own := maps.Clone(details)
	if target != uuid.Nil {
		own["target_user_id"] = target.String()
	}
	if err := tx.CreateSecurityLog(ctx, s.audit(now, c, EventAdminAction, ResultSuccess, uuid.Nil, "", own)); err != nil {
		return err
	}
	if target == uuid.Nil {
		return nil
	}
	// The copy is the same action seen from the user's side: it bypasses
	// txn's CreateSecurityLog so that the metrics count the action once.
	return tx.Queries.CreateSecurityLog(ctx, NewSecurityLog(now, EventAdminAction, ResultSuccess, target, "", "", "", details))
}

// errNoUser is what an administrator is told of an id that names no
// account, or an erased one where there is nothing left to act on: one
// wording, whichever (the store's own says "not found").
var errNoUser = Errorf(ENotFound, "No such user.")

// adminAction runs fn on the (locked) user and logs what it did.
func (s *Service) adminAction(ctx context.Context, c Client, id uuid.UUID, action string,
	fn func(tx *txn, u *User, now time.Time) (map[string]any, error)) error {
	return s.inTx(ctx, func(tx *txn) error {
		u, err := tx.User(ctx, id)
		if ErrorCode(err) == ENotFound || (err == nil && u.IsDeleted()) {
			return errNoUser
		}
		if err != nil {
			return err
		}
		now := s.now()
		details, err := fn(tx, u, now)
		if err != nil {
			return err
		}
		if details == nil {
			details = map[string]any{}
		}
		details["action"] = action
		return s.logAdmin(ctx, tx, now, c, id, details)
	})
}

// LockUser locks an account until until (the zero time: until unlocked),
// ending its sessions and voiding its reset links; only an administrator
// lifts it (a password reset does not). EInvalid for an until in the past
// or past the year 9999; ENotFound.
func (s *Service) LockUser(ctx context.Context, c Client, id uuid.UUID, until time.Time) error {
	switch {
	case !until.IsZero() && !until.After(s.now()):
		return invalidField("until", "must be in the future")
	case !writableYear(until): // the zero time is year 1
		return invalidField("until", "must be before the year 10000 (leave it out for a lock without an end)")
	}
	return s.adminAction(ctx, c, id, "lock", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		u.AccountStatus, u.AccountLockedUntil, u.UpdatedAt = StatusLocked, until.UTC().Truncate(time.Microsecond), now
		u.LockReason = LockAdmin
		if err := tx.UpdateUser(ctx, u); err != nil {
			return nil, err
		}
		ids, err := s.endUserSessions(ctx, tx, u.ID, uuid.Nil, now, "admin_lock")
		if err != nil {
			return nil, err
		}
		// A reset link mailed before the lock must not let anyone in, nor
		// one asked for before it and sent after the unlock.
		if err := tx.DeleteVerificationTokens(ctx, u.ID, PasswordReset); err != nil {
			return nil, err
		}
		if err := tx.WithdrawMails(ctx, u.ID, MailPasswordReset); err != nil {
			return nil, err
		}
		// Nor an address change asked for before it (by an intruder,
		// perhaps: the reason for many a lock).
		if err := s.voidEmailChange(ctx, tx, u); err != nil {
			return nil, err
		}
		details := map[string]any{"sessions_revoked": len(ids)}
		if !until.IsZero() {
			details["until"] = u.AccountLockedUntil
		}
		return details, nil
	})
}

// errAddressTaken refuses an administrator's move of an account to an
// address that another account has.
var errAddressTaken = Errorf(EConflict, "That address belongs to another account.")

// SetUserEmail moves an account to email as an administrator (support
// helping a user who lost the old mailbox, say). The address is held to a
// new account's rules. It is verified when the administrator says they
// checked it; otherwise a verification link goes there, which the user
// follows before signing in (when AUTHD_REQUIRE_VERIFIED_EMAIL holds). As
// with the user's own change (moveAddress), every session ends, the links
// and mail of the old address are void, and the old address is told.
// Returns EInvalid, EConflict (another account has the address),
// ENotFound, EUnavailable.
func (s *Service) SetUserEmail(ctx context.Context, c Client, id uuid.UUID, email string, verified bool) error {
	err := s.adminAction(ctx, c, id, "change_email", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		// Checked once the user is found: an unknown id is told alike on
		// every route, whatever the body.
		if email == "" {
			return nil, invalidField("email", "is required")
		}
		email, err := newAddress(email)
		if err != nil {
			return nil, err
		}
		if u.Email == email {
			return nil, errSameAddress("email")
		}
		// EmailTaken locks nothing: see refuseIfTaken.
		if taken, err := tx.EmailTaken(ctx, email); err != nil {
			return nil, err
		} else if taken {
			return nil, errAddressTaken
		}
		// The old address hears that support moved the account, not
		// where to: the move is for a user who lost that mailbox, which
		// someone else may hold now. An address never shown to be the
		// user's hears nothing (nor, as ever, one that reaches no one).
		notice := changeNotice(u, "")
		if !u.EmailVerified {
			notice = nil
		}
		ended, err := s.moveAddress(ctx, tx, u, email, verified, now)
		if err != nil {
			return nil, err
		}
		if notice != nil {
			notice.Done, notice.ByAdministrator = true, true
			if err := tx.enqueueMail(ctx, now, u, notice); err != nil {
				return nil, err
			}
		}
		if !verified {
			if err := s.mailVerification(ctx, tx, Client{}, u, now); err != nil {
				return nil, err
			}
		}
		// The user's own row of the change, without the administrator's
		// client, as logAdmin's copy of the action.
		if err := tx.CreateSecurityLog(ctx, s.audit(now, Client{}, EventEmailChanged, ResultSuccess, u.ID, "",
			map[string]any{"sessions_revoked": ended, "by_administrator": true})); err != nil {
			return nil, err
		}
		return map[string]any{"sessions_revoked": ended, "verified": verified}, nil
	})
	if ErrorCode(err) == EConflict {
		// Registered since EmailTaken looked: the unique index refused it,
		// and the transaction rolled back.
		return errAddressTaken
	}
	return err
}

// UnlockUser lifts a lock, and the refusal of second-factor codes a lock
// set past the password left. ENotFound.
func (s *Service) UnlockUser(ctx context.Context, c Client, id uuid.UUID) error {
	return s.adminAction(ctx, c, id, "unlock", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		u.CodesLockedUntil = time.Time{}
		if u.AccountStatus != StatusLocked {
			// Nothing to lift, and no account_unlocked row to say so; the
			// failures counted toward a lock start afresh, as an unlock's do.
			u.clearFailures()
			u.UpdatedAt = now
			return map[string]any{"was_locked": false}, tx.UpdateUser(ctx, u)
		}
		// account_unlocked is the user's to read: it gets no administrator's client (logAdmin).
		return map[string]any{"was_locked": true}, s.unlock(ctx, tx, Client{}, u, now, reasonAdminUnlock)
	})
}

// RevokeUserSessions ends every session of a user. ENotFound.
func (s *Service) RevokeUserSessions(ctx context.Context, c Client, id uuid.UUID) error {
	return s.adminAction(ctx, c, id, "revoke_sessions", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		ids, err := s.endUserSessions(ctx, tx, u.ID, uuid.Nil, now, "admin_revoke")
		return map[string]any{"sessions_revoked": len(ids)}, err
	})
}

// DeleteUser erases an account as DeleteMe does. ENotFound.
func (s *Service) DeleteUser(ctx context.Context, c Client, id uuid.UUID) error {
	var address string
	var spent bool
	err := s.adminAction(ctx, c, id, "delete", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		address = u.Email
		var err error
		spent, err = s.erase(ctx, tx, u, now, "admin")
		return nil, err
	})
	return s.afterErasure(ctx, id, address, spent, err)
}

// UserMFA shows an administrator a user's second factors (never their
// secrets) and how many recovery codes are left; the read is logged.
// ENotFound.
func (s *Service) UserMFA(ctx context.Context, c Client, id uuid.UUID) (*MFAStatus, error) {
	u, err := s.store.User(ctx, id)
	if ErrorCode(err) == ENotFound || (err == nil && u.IsDeleted()) {
		return nil, errNoUser
	}
	if err != nil {
		return nil, err
	}
	st, err := s.mfaStatus(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := s.auditRead(ctx, c, id, map[string]any{"action": "show_mfa", "count": len(st.Factors)}); err != nil {
		return nil, err
	}
	return st, nil
}

// ResetMFA removes every second factor of a user (TOTP and passkeys), with
// their recovery codes,
// so that the password alone signs in again: the way back for a user who
// lost their authenticator and their codes. Logins waiting for a code can
// no longer finish (VerifyMFA finds no factor). The user's sessions stay;
// revoke them too when the reset answers a compromise. When it removed
// something, the user is told by mail (mfa_reset) in the same transaction,
// whatever the address's mail budget: anyone can spend that budget with
// forgot-password requests, and a notice an attacker can silence before a
// social-engineered reset protects no one. Only an administrator triggers
// it, and only when something went, so it cannot flood. It returns what
// it removed. ENotFound.
func (s *Service) ResetMFA(ctx context.Context, c Client, id uuid.UUID) (MFARemoval, error) {
	var removed MFARemoval
	err := s.adminAction(ctx, c, id, "reset_mfa", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		removed = MFARemoval{}
		factors, err := tx.Factors(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		kinds := []string{}
		for _, f := range factors {
			if err := tx.DeleteFactor(ctx, f.ID); err != nil {
				return nil, err
			}
			kinds = append(kinds, string(f.Kind))
			// An enrolment never confirmed protected nothing.
			removed.TOTP = removed.TOTP || (f.Kind == FactorTOTP && f.Confirmed)
		}
		removed.RecoveryCodes, err = tx.RecoveryCodesLeft(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		if err := tx.ReplaceRecoveryCodes(ctx, u.ID, nil); err != nil {
			return nil, err
		}
		removed.Passkeys, err = s.deleteUserPasskeys(ctx, tx, Client{}, u.ID, "admin", now)
		if err != nil {
			return nil, err
		}
		// A registration begun before, with the factors now removed, would
		// finish as the account's first factor: whoever began it would get
		// the recovery codes and end every other session.
		if err := voidRegistrations(ctx, tx, u.ID, now); err != nil {
			return nil, err
		}
		// With no factor left, a refusal of codes protects nothing, and
		// would refuse the first code of the factor enrolled next; the
		// failures counted stay, as plain ones: no factor is left to guess.
		if u.FailedCodeAttempts > 0 || !u.CodesLockedUntil.IsZero() {
			u.FailedCodeAttempts, u.CodesLockedUntil, u.UpdatedAt = 0, time.Time{}, now
			if err := tx.UpdateUser(ctx, u); err != nil {
				return nil, err
			}
		}
		mailed := !removed.IsZero()
		if mailed {
			if err := tx.enqueueMail(ctx, now, u, &OutboxMail{Kind: MailMFAReset, Removed: removed}); err != nil {
				return nil, err
			}
		}
		return map[string]any{"factors_removed": kinds, "recovery_codes_removed": removed.RecoveryCodes,
			"passkeys_removed": removed.Passkeys, "notice_mailed": mailed}, nil
	})
	return removed, err
}
