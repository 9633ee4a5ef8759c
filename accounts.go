package authd

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Register creates an account for email and mails a verification link
// (SPEC §6.2). It answers alike whether or not the email is taken (§6.6):
// for a taken address it mails that address a notice instead. Returns
// EInvalid (bad email, no consent), EWeakPassword, ERateLimited,
// EUnavailable.
func (s *Service) Register(ctx context.Context, c Client, email, password string, consent bool) error {
	// As the other flows that mail: a client that hangs up must not cut the
	// transaction short, where its COMMIT may or may not have run
	// (refundMail).
	ctx, cancel := s.detach(ctx)
	defer cancel()
	email, err := newAddress(email)
	if err != nil {
		return err
	}
	if !consent {
		return invalidField("consent", "must be true: the account needs your consent to process your data")
	}
	if err := s.checkPassword("password", password, email); err != nil {
		return err
	}
	if err := s.limitIP(ctx, "register", c); err != nil {
		return err
	}
	// Hash before looking the email up, so that both answers take as long.
	hash, err := s.passwords.Hash(ctx, password)
	if err != nil {
		return err
	}
	// Either answer mails the address, so either counts toward its limit,
	// alike, as a notice (a new account's link may go past it: see below).
	mail := s.noticeAllowed(ctx, email)
	subAddress := s.subAddressAllowed(ctx, email) // both answers count, as for the address
	spentNewAccount := false                      // the new account's allowance (below)
	register := func(tx *txn) error {
		now := s.now()
		existing, err := tx.UserByEmail(ctx, email)
		switch {
		case err == nil:
			// An account not verified at a sub-address is mailed past its
			// mailbox's budget no more than a link (registrations at
			// name+1@, name+2@, … again would mail one inbox their notices).
			notice := mail && (existing.EmailVerified || subAddress)
			if notice {
				if err := tx.enqueue(ctx, now, MailRegisterNotice, existing, time.Time{}); err != nil {
					return err
				}
			}
			return tx.CreateSecurityLog(ctx, s.audit(now, c, EventRegistration, ResultFailure, existing.ID,
				"email already registered", map[string]any{"notice_mailed": notice}))
		case ErrorCode(err) != ENotFound:
			return err
		}
		u := &User{
			ID: NewID(), Email: email, PasswordHash: hash, AccountStatus: StatusInactive,
			RegistrationTimestamp: now, LastPasswordChange: now, ConsentStatus: true, ConsentTimestamp: now,
			CreatedAt: now, UpdatedAt: now,
		}
		if !s.cfg.RequireVerifiedEmail {
			u.AccountStatus = StatusActive
		}
		if err := tx.CreateUser(ctx, u); err != nil {
			return err
		}
		// The new account's link may go out past the address's budget
		// (which it spent if it could), once an hour: the budget, spent in
		// the order requests come, may have gone to the notices of
		// registrations racing this one, notices that exist only because
		// this one won; its owner must not get them and no link, and a
		// resend refused for the hour. Once: an address whose accounts are
		// made and erased again and again (verification off) is mailed no
		// more than that. Spent here, in the transaction, not before it:
		// spent by every registration past the budget, the allowance would
		// go to a racing notice as the budget did.
		// A new account is not verified: past its mailbox's budget, a
		// sub-address's link is held back, and spends no allowance.
		mailed := mail && subAddress
		if !mail && subAddress {
			spentNewAccount = true
			mailed = s.limitEmail(ctx, newAccountMail, email, 1, mailLimitRange) == nil
		}
		if err := tx.CreateSecurityLog(ctx, s.audit(now, c, EventRegistration, ResultSuccess, u.ID, "",
			map[string]any{"consent": true, "verification_mailed": mailed})); err != nil {
			return err
		}
		if !mailed {
			return nil // the address had its mails for the hour; a resend later sends the link
		}
		return s.mailVerification(ctx, tx, c, u, now)
	}
	err = s.inTx(ctx, register)
	if ErrorCode(err) == EConflict {
		// Another registration of the address committed between this
		// one's read and its insert (the unique index refused the second
		// account): the address has an account now, and is answered as
		// one, with the same 202.
		err = s.inTx(ctx, register)
	}
	if mail {
		s.refundMail(ctx, err, email)
	}
	if spentNewAccount {
		s.refundEmailLimit(ctx, err, newAccountMail, email)
	}
	return err
}

// mailbox is the mailbox the address email (normalised) most likely
// reaches: the local part without its sub-address ("+tag", which nearly
// every provider delivers as the address without it). Only the
// sub-address budget uses it (subAddressAllowed): two mailboxes it takes
// for one share that, no worse. Gmail's dots are left alone: folded, a
// dotted address, which its owner takes for a plain one, would be held
// back as a sub-address.
func mailbox(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return email
	}
	local := email[:at]
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return local + email[at:]
}

// subAddressAllowed counts a request that may mail a link to email
// against its mailbox's budget when email is a sub-address (mailsPerEmail
// an hour, kind subAddressMails), beside the address's own, and reports
// whether the link may go out. Whoever registers name+1@, name+2@, … and
// asks a link for each would otherwise mail one inbox a budget each. Like
// the address's own budget it is counted before the address is looked up
// (registration, forgot, resend) or whatever the address is (an address
// change's link), so that it tells nothing of accounts; and it holds back
// links to accounts not verified only (and moves to another mailbox):
// strangers can make those, not verified ones, so a mailbox's own address
// and its owner's verified sub-addresses keep their mails whatever
// strangers do.
func (s *Service) subAddressAllowed(ctx context.Context, email string) bool {
	box := mailbox(email)
	return box == email || s.limitEmail(ctx, subAddressMails, box, mailsPerEmail, mailLimitRange) == nil
}

// subAddressMails is the per-mailbox limit of subAddressAllowed.
const subAddressMails = "mail-subaddress"

// reasonSubAddressSpent is the reason logged for a link not mailed past
// subAddressAllowed's budget (the answer is the usual one; an outage does not
// give that budget back, unlike the address's own).
const reasonSubAddressSpent = "the mailbox's sub-address mails are spent for the hour"

// newAccountMail is the per-email limit of a new account's verification
// mails past the address's mail budget.
const newAccountMail = "mail-new-account"

// mailVerification voids the user's older verification links, withdraws
// a mail of one still queued (newLinkMail), and queues a mail with a new
// one (minted when the mail is delivered).
func (s *Service) mailVerification(ctx context.Context, tx *txn, c Client, u *User, now time.Time) error {
	if err := newLinkMail(ctx, tx, u, VerifyEmail, MailVerifyEmail); err != nil {
		return err
	}
	if err := tx.enqueue(ctx, now, MailVerifyEmail, u, time.Time{}); err != nil {
		return err
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailVerificationSent, ResultSuccess, u.ID, "", nil))
}

// newVerificationToken replaces the user's tokens of the type with a new one
// and returns it; only its digest is stored. newEmail is the address an
// email_verification token moves the account to, "" for one that verifies
// the account's own; each replaces only its own kind (the newest link of
// each is the one to follow).
func (s *Service) newVerificationToken(ctx context.Context, tx *txn, user uuid.UUID, typ VerificationType,
	newEmail string, expires, now time.Time) (string, error) {
	var err error
	if newEmail == "" {
		err = tx.DeleteVerificationTokens(ctx, user, typ)
	} else {
		err = tx.DeleteEmailChanges(ctx, user)
	}
	if err != nil {
		return "", err
	}
	raw, digest := newOpaqueToken()
	if newEmail != "" {
		raw, digest = newOpaqueTokenOf(changeTokenBytes)
	}
	v := &VerificationToken{ID: NewID(), Token: digest, UserID: user, TokenType: typ, NewEmail: newEmail,
		CreatedAt: now, ExpiresAt: expires}
	return raw, tx.CreateVerificationToken(ctx, v)
}

// consume redeems a usable verification token of the type (locked for the
// transaction: one use only) and returns it and its user. An unknown,
// used, expired or foreign token, or one of an erased account, is refused
// and logged as a failure of event, or of email_changed for a token that
// changes an address (SPEC 6.10). before, when not nil, runs on the user
// and the token before the token is spent: its refusal leaves the token
// good.
func (s *Service) consume(ctx context.Context, tx *txn, c Client, raw string, typ VerificationType,
	event EventType, now time.Time, before func(*User, *VerificationToken) error) (*User, *VerificationToken, error) {
	digest, err := linkDigest(raw)
	if err != nil {
		return nil, nil, s.refuseToken(ctx, tx, c, event, uuid.Nil, "malformed token", nil)
	}
	v, err := tx.VerificationToken(ctx, digest)
	if ErrorCode(err) == ENotFound {
		return nil, nil, s.refuseToken(ctx, tx, c, event, uuid.Nil, "unknown token", nil)
	}
	if err != nil {
		return nil, nil, err
	}
	if v.NewEmail != "" && typ == VerifyEmail {
		event = EventEmailChanged
	}
	switch {
	case v.TokenType != typ:
		return nil, nil, s.refuseToken(ctx, tx, c, event, uuid.Nil, "token of another kind", nil)
	case v.Used:
		return nil, nil, s.refuseToken(ctx, tx, c, event, v.UserID, "token already used", nil)
	case !v.Usable(now):
		return nil, nil, s.refuseToken(ctx, tx, c, event, v.UserID, "token expired", nil)
	}
	u, err := tx.User(ctx, v.UserID)
	if err != nil {
		return nil, nil, err
	}
	if u.IsDeleted() {
		return nil, nil, s.refuseToken(ctx, tx, c, event, u.ID, "account deleted", nil)
	}
	if before != nil {
		if err := before(u, v); err != nil {
			return nil, nil, err
		}
	}
	v.Used, v.UsedAt = true, now
	return u, v, tx.UseVerificationToken(ctx, v)
}

// VerifyEmail redeems a verification token: the address is verified and an
// inactive account becomes active; a token mailed to a new address moves
// the account there (changeEmail), and newEmail is that address ("" for
// the others). A token that moves the account needs its password too, and
// the second factor's proof when the user has one (both ignored for the
// others): the link proves only the new mailbox, and the owner of a
// mistyped address must not get the account by following it
// (checkChangeLink). Returns EInvalidToken for an unknown, used or expired
// token, ERateLimited after many of those, EConflict for a new address
// that got an account meanwhile; for a change, EInvalid without a
// password, EMFARequired without the proof, and EInvalidCredentials or
// EAccountLocked as a re-authentication does.
func (s *Service) VerifyEmail(ctx context.Context, c Client, token, password string, proof StepUp) (newEmail string,
	err error) {
	ctx, cancel := s.detach(ctx) // a password check finishes whatever the client does
	defer cancel()
	var checked *User
	var attempt int // of the link's password checks, this one's
	v, err := s.usableToken(ctx, token, VerifyEmail)
	if err != nil && ErrorCode(err) != EInvalidToken {
		return "", err
	}
	if err == nil && v.NewEmail != "" {
		// Until the account's password is proved, whoever follows the link
		// may be the new address's owner, a stranger to the account: the
		// rows it writes there keep no client, lest whoever asked to move
		// to someone's address read in their own log where that someone is
		// and what they run.
		unproved := Client{}
		if checked, attempt, err = s.checkChangeLink(ctx, unproved, v, password, proof); err != nil {
			return v.NewEmail, s.spentIfLast(ctx, unproved, v.Token, attempt, err)
		}
	}
	var user uuid.UUID
	err = s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		// A change's password check must still hold (no lock, no new
		// password since), and its second factor pass, checked before the
		// link is spent: a right password that a lock overtook keeps its
		// link, as a wrong one does, so the two are not told apart.
		recheck := func(u *User, v *VerificationToken) error {
			if v.NewEmail == "" {
				return nil
			}
			if checked == nil || checked.ID != u.ID {
				return errInvalidToken // read as another token before: a race no real link runs
			}
			if err := s.stillChecked(ctx, tx, c, u, checked.PasswordHash, EventEmailChanged, now); err != nil {
				return err
			}
			if err := s.refuseIfTaken(ctx, tx, c, u, v, now); err != nil {
				return err
			}
			err := s.checkStepUp(ctx, tx, c, u, proof, EventEmailChanged, now)
			r, ok := errors.AsType[*refusal](err)
			switch {
			case ok && attempt >= linkPasswordAttempts:
				// The last attempt failed on its second factor: the link
				// is void now and the owner told, as after a wrong
				// password, not at a further try. A lock the failure set
				// (or met) is still the answer.
				if err := s.voidChangeLink(ctx, tx, u, v, now); err != nil {
					return err
				}
				if err := tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailChanged, ResultFailure, u.ID,
					"second factor not proved", map[string]any{"link_attempts": attempt, "link_voided": true})); err != nil {
					return err
				}
				if ErrorCode(r.err) == EAccountLocked {
					r.err = linkVoidedUnderLock(r.err)
				} else {
					r.err = errLinkFactorVoided
				}
			case ok && len(proof.Passkey) > 0 && ErrorCode(err) == EInvalidToken:
				// The passkey answered no open ceremony of the user
				// (expired, used, another's): the link is still good,
				// and must not be answered as if it were not.
				r.err = errCeremonyGone
			}
			return forLink(err)
		}
		u, v, err := s.consume(ctx, tx, c, token, VerifyEmail, EventEmailVerified, now, recheck)
		if err != nil {
			return err
		}
		if v.NewEmail != "" {
			newEmail, user = v.NewEmail, u.ID
			return s.changeEmail(ctx, tx, c, u, v.NewEmail, now)
		}
		u.EmailVerified = true
		if u.AccountStatus == StatusInactive {
			u.AccountStatus = StatusActive
		}
		u.UpdatedAt = now
		if err := tx.UpdateUser(ctx, u); err != nil {
			return err
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailVerified, ResultSuccess, u.ID, "", nil))
	})
	if newEmail != "" && ErrorCode(err) == EConflict && !errors.Is(err, errEmailTaken) {
		// The unique index refused the new address, registered while the
		// change was made: its transaction rolled back, so the refusal is
		// logged, and the link spent, on their own, as refuseIfTaken
		// would have (not voided as if its attempts had run out).
		if lerr := s.logEvent(ctx, s.audit(s.now(), c, EventEmailChanged, ResultFailure, user,
			"email already registered", nil)); lerr != nil {
			return newEmail, lerr
		}
		if serr := s.spendChangeLink(ctx, v.Token); serr != nil {
			return newEmail, serr
		}
		err = errEmailTaken
	}
	if checked != nil {
		err = s.spentIfLast(ctx, c, v.Token, attempt, err)
	}
	if err != nil && checked != nil {
		// A change link refused past its password (a wrong code, a lock):
		// its page asks again, the link being good still.
		newEmail = v.NewEmail
	}
	return newEmail, err
}

// ResendVerification mails a new verification link to an unverified
// account, voiding the older one. It answers alike for every address
// (SPEC §6.6); the per-email limit counts unknown addresses too. Returns
// EInvalid, ERateLimited, EUnavailable.
func (s *Service) ResendVerification(ctx context.Context, c Client, email string) error {
	ctx, cancel := s.detach(ctx) // see mailRequest
	defer cancel()
	return s.mailRequest(ctx, c, "resend", email, EventEmailVerificationSent, func(tx *txn, u *User, now time.Time) error {
		if u.EmailVerified {
			return tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailVerificationSent, ResultFailure, u.ID,
				"already verified", nil))
		}
		return s.mailVerification(ctx, tx, c, u, now)
	})
}

// CheckToken reports, without using it, whether a verification or reset
// token can still be redeemed: nil, or EInvalidToken; newEmail is the
// address a token that changes it moves the account to. The pages call it on
// GET, which must never consume a token (mail scanners follow links). A
// refusal counts toward badTokensPerIP a minute per client, under a key of
// the pages' own: past it a dead link gets ERateLimited (unlogged), which
// slows a search for live tokens to the same pace as the API's refusals.
// A live link still opens: refusing those too would let anyone sharing
// the client's address block them, and the API's own refusals (refresh,
// codes) are not spent by old links a mail scanner fetches again.
func (s *Service) CheckToken(ctx context.Context, c Client, raw string, typ VerificationType) (newEmail string, err error) {
	v, err := s.liveLink(ctx, c, raw, typ)
	if err != nil {
		return "", err
	}
	return v.NewEmail, nil
}

// liveLink is CheckToken's read: the token, or EInvalidToken counted
// toward the client's dead links.
func (s *Service) liveLink(ctx context.Context, c Client, raw string, typ VerificationType) (*VerificationToken, error) {
	v, err := s.usableToken(ctx, raw, typ)
	if ErrorCode(err) == EInvalidToken {
		if lerr := s.limit(ctx, "dead-link:"+clientKey(c), badTokensPerIP, time.Minute); lerr != nil {
			return nil, lerr
		}
	}
	return v, err
}

// usableToken reads (without locking or using it) the token behind raw,
// or returns EInvalidToken.
func (s *Service) usableToken(ctx context.Context, raw string, typ VerificationType) (*VerificationToken, error) {
	digest, err := linkDigest(raw)
	if err != nil {
		return nil, err
	}
	v, err := s.store.VerificationToken(ctx, digest)
	if ErrorCode(err) == ENotFound {
		return nil, errInvalidToken
	}
	if err != nil {
		return nil, err
	}
	if v.TokenType != typ || !v.Usable(s.now()) {
		return nil, errInvalidToken
	}
	return v, nil
}

// newLinkMail makes way for a new link of purpose, mailed as kind: the
// older links are void, and a mail of one still queued (the relay down, a
// retry's wait) is withdrawn, so that one mail goes out, with the live
// link: senders racing on their due times could deliver a dead one last.
func newLinkMail(ctx context.Context, tx *txn, u *User, purpose VerificationType, kind MailKind) error {
	if err := tx.DeleteVerificationTokens(ctx, u.ID, purpose); err != nil {
		return err
	}
	return tx.WithdrawMails(ctx, u.ID, kind)
}
