package authd

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// The administrator's operations (SPEC §5 admin listener, §3 `authd admin`).
// Each writes an admin_action row saying what was done.

// Users lists users matching f, newest first, one page.
func (s *Service) Users(ctx context.Context, f UserFilter) (Page[*User], error) {
	limit, err := ListLimit(f.Limit)
	if err != nil {
		return Page[*User]{}, err
	}
	f.Limit = limit + 1
	rows, err := s.store.Users(ctx, f)
	if err != nil {
		return Page[*User]{}, err
	}
	return page(rows, limit, func(u *User) Cursor { return Cursor{Time: u.CreatedAt, ID: u.ID} }), nil
}

// User returns a user by id. ENotFound when there is none.
func (s *Service) User(ctx context.Context, id uuid.UUID) (*User, error) {
	return s.store.User(ctx, id)
}

// adminAction runs fn on the (locked) user and logs what it did.
func (s *Service) adminAction(ctx context.Context, c Client, id uuid.UUID, action string,
	fn func(tx *txn, u *User, now time.Time) (map[string]any, error)) error {
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		u, err := tx.User(ctx, id)
		if err != nil {
			return err
		}
		if u.IsDeleted() {
			return Errorf(ENotFound, "No such user.")
		}
		details, err := fn(tx, u, now)
		if err != nil {
			return err
		}
		if details == nil {
			details = map[string]any{}
		}
		details["action"] = action
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventAdminAction, ResultSuccess, id, "", details))
	})
}

// LockUser locks an account until until (the zero time: until unlocked),
// ending its sessions and voiding its reset links; only an administrator
// lifts it (a password reset does not). EInvalid for an until in the past; ENotFound.
func (s *Service) LockUser(ctx context.Context, c Client, id uuid.UUID, until time.Time) error {
	if !until.IsZero() && !until.After(s.now()) {
		return &Error{Code: EInvalid, Message: "invalid request",
			Fields: []FieldError{{Field: "until", Message: "must be in the future"}}}
	}
	return s.adminAction(ctx, c, id, "lock", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		u.AccountStatus, u.AccountLockedUntil, u.UpdatedAt = StatusLocked, until.UTC().Truncate(time.Microsecond), now
		u.LockReason = LockAdmin
		if err := tx.UpdateUser(ctx, u); err != nil {
			return nil, err
		}
		ids, err := s.endUserSessions(ctx, tx, u.ID, uuid.Nil, now)
		if err != nil {
			return nil, err
		}
		// A reset link mailed before the lock must not let anyone in.
		if err := tx.DeleteVerificationTokens(ctx, u.ID, PasswordReset); err != nil {
			return nil, err
		}
		details := map[string]any{"sessions_revoked": len(ids)}
		if !until.IsZero() {
			details["until"] = u.AccountLockedUntil
		}
		return details, nil
	})
}

// UnlockUser lifts a lock. ENotFound.
func (s *Service) UnlockUser(ctx context.Context, c Client, id uuid.UUID) error {
	return s.adminAction(ctx, c, id, "unlock", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		return map[string]any{"was_locked": u.AccountStatus == StatusLocked}, s.unlock(ctx, tx, c, u, now, "unlocked by an administrator")
	})
}

// RevokeUserSessions ends every session of a user. ENotFound.
func (s *Service) RevokeUserSessions(ctx context.Context, c Client, id uuid.UUID) error {
	return s.adminAction(ctx, c, id, "revoke_sessions", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		ids, err := s.endUserSessions(ctx, tx, u.ID, uuid.Nil, now)
		return map[string]any{"sessions_revoked": len(ids)}, err
	})
}

// DeleteUser erases an account as DeleteMe does. ENotFound.
func (s *Service) DeleteUser(ctx context.Context, c Client, id uuid.UUID) error {
	var address string
	err := s.adminAction(ctx, c, id, "delete", func(tx *txn, u *User, now time.Time) (map[string]any, error) {
		address = u.Email
		return nil, s.erase(ctx, tx, u, now, "admin")
	})
	return s.forgetErased(ctx, address, err)
}
