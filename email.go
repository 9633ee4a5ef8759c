package authd

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// Changing an account's address. RequestEmailChange, from a signed-in
// session with the password (and the second factor, when the user has
// one), mails a link to the new address and a notice to the old one;
// following the link (VerifyEmail: an email_verification token that names
// the new address) moves the account there, verified, ends every session,
// voids what was mailed to the old address and tells it. The link proves
// the new mailbox; the password, the factor and the notices keep an
// intruder holding a stolen access token from moving the account out of
// its owner's reach.

// emailChangesPerHour bounds the address changes a user may ask for an
// hour: each mails the old address a notice past its mail budget.
const emailChangesPerHour = 5

// errEmailTaken refuses an address change whose new address got an
// account after the link was mailed.
var errEmailTaken = &Error{Code: EConflict,
	Message: "That address belongs to another account now; this one keeps its address."}

// RequestEmailChange mails a link that moves the token's user to newEmail,
// and a notice to their address. It answers alike whether or not newEmail
// has an account (SPEC §6.6): such an address is told instead that someone
// asked to move an account to it, and gets no link. A newer request voids
// an older one's link, as does a password change or reset. Returns
// EInvalid (bad or unchanged address), EInvalidCredentials (wrong password
// or code), EMFARequired, EAccountLocked, ERateLimited, EInvalidToken,
// EUnavailable.
func (s *Service) RequestEmailChange(ctx context.Context, c Client, a *AccessClaims, newEmail, password string,
	proof StepUp) error {
	ctx, cancel := detach(ctx) // the checks finish whatever the client does
	defer cancel()
	newEmail, err := NormalizeEmail(newEmail)
	if err == nil {
		err = checkNewAddress(newEmail)
	}
	if err != nil {
		return renameField(err, "email", "new_email")
	}
	checked, err := s.reauthenticateStepUp(ctx, c, a, password, "password", proof, EventEmailChangeRequested)
	if err != nil {
		return err
	}
	if checked.Email == newEmail {
		return &Error{Code: EInvalid, Message: "invalid request",
			Fields: []FieldError{{Field: "new_email", Message: "is already the account's address"}}}
	}
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		u, err := s.recheck(ctx, tx, c, checked, proof, EventEmailChangeRequested, now)
		if err != nil {
			return err
		}
		// Counted once the password and the second factor passed, so that
		// a stolen access token (or the password alone) cannot spend them.
		if err := s.limit(ctx, "email-change:"+a.UserID.String(), emailChangesPerHour, time.Hour); err != nil {
			return err
		}
		// The new address's mail budget, as any mail to it: past it the
		// request answers as usual and no mail goes there (SPEC 6.7).
		mail := s.mailAllowed(ctx, newEmail)
		// Whether newEmail has an account is not looked at here: the
		// answer, the row, the mails queued and the user's data must be
		// alike either way (SPEC §6.6), since the requester can read all
		// of them. The mail's sender finds it out (deliver, addressHolder).
		if err := s.voidEmailChange(ctx, tx, u); err != nil {
			return err
		}
		if mail {
			if err := tx.enqueueMail(ctx, now, u, &OutboxMail{Kind: MailEmailChange, To: newEmail}); err != nil {
				return err
			}
		}
		// The old address hears of every request: the owner may not be
		// the one asking.
		if err := tx.enqueueMail(ctx, now, u, &OutboxMail{Kind: MailEmailChangeNotice, NewEmail: newEmail}); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailChangeRequested, ResultSuccess, u.ID, "",
			map[string]any{"mailed": mail}))
	})
}

// CancelEmailChange voids the token's user's pending address change, if
// any: its link dies, and a mail not yet sent is withdrawn (a mistyped
// address, a change thought better of). It answers alike whether or not a
// change was pending, which the user could otherwise learn of a request
// for an address that has an account (that one has no link). Returns
// EInvalidToken, EUnavailable.
func (s *Service) CancelEmailChange(ctx context.Context, c Client, a *AccessClaims) error {
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		u, err := s.tokenUser(tx.User(ctx, a.UserID))
		if err != nil {
			return err
		}
		if err := s.voidEmailChange(ctx, tx, u); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailChanged, ResultFailure, u.ID,
			"cancelled by the user", nil))
	})
}

// voidEmailChange withdraws u's address change in tx: its link, and its
// mail if still queued (or dead, which an operator could revive).
func (s *Service) voidEmailChange(ctx context.Context, tx *txn, u *User) error {
	if err := tx.DeleteEmailChanges(ctx, u.ID); err != nil {
		return err
	}
	return tx.WithdrawMails(ctx, u.ID, MailEmailChange)
}

// changeEmail moves u (locked in tx, its change token just used) to
// newEmail, as the link mailed there and the password proved: the address
// is verified, an inactive account becomes active, every session ends
// (each holds tokens and sign-ins made under the old address), the links
// mailed to the old address are void, its queued mail withdrawn, and the
// old address is told. A
// locked account was refused before the token was spent (VerifyEmail's
// recheck); one whose new address got an account meanwhile keeps its
// address (EConflict).
func (s *Service) changeEmail(ctx context.Context, tx *txn, c Client, u *User, newEmail string, now time.Time) error {
	// Not UserByEmail, which would lock that account's row while this one
	// is held: two accounts moving to each other's address would deadlock.
	if taken, err := tx.EmailTaken(ctx, newEmail); err != nil {
		return err
	} else if taken {
		return tx.refuse(ctx, s.audit(now, c, EventEmailChanged, ResultFailure, u.ID, "email already registered", nil),
			errEmailTaken)
	}
	// The sessions end before the address changes: an UPDATE of the email,
	// a key column, locks the user against the inserts that name it, such
	// as a refresh's new token, which a session being ended may be making
	// (docs/design.md, lock order).
	ids, err := s.endUserSessions(ctx, tx, u.ID, uuid.Nil, now, string(EventEmailChanged))
	if err != nil {
		return err
	}
	if err := tx.VoidOpenMFAChallenges(ctx, u.ID, MFAChallengeVoided); err != nil {
		return err
	}
	if err := s.voidEmailChange(ctx, tx, u); err != nil {
		return err
	}
	for _, typ := range VerificationTypes() {
		if err := tx.DeleteVerificationTokens(ctx, u.ID, typ); err != nil {
			return err
		}
	}
	// Every mail still queued goes too: links mailed to the old address,
	// and notices about the account, which the next owner of that address
	// (free at once) must not read; the old address hears of the change
	// alone, below.
	for _, kind := range MailKinds() {
		if err := tx.WithdrawMails(ctx, u.ID, kind); err != nil {
			return err
		}
	}
	old := u.Email
	u.Email, u.EmailVerified, u.UpdatedAt = newEmail, true, now
	if u.AccountStatus == StatusInactive {
		u.AccountStatus = StatusActive
	}
	// Registered between the check above and this write, the address is
	// refused by the unique index, here or when the write is sent (a
	// batch, the commit): EConflict rolls the change back, and VerifyEmail
	// logs it.
	if err := tx.UpdateUser(ctx, u); err != nil {
		return err
	}
	if err := tx.enqueueMail(ctx, now, u, &OutboxMail{Kind: MailEmailChangeNotice, To: old, NewEmail: newEmail,
		Done: true}); err != nil {
		return err
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailChanged, ResultSuccess, u.ID, "",
		map[string]any{"sessions_revoked": len(ids)}))
}
