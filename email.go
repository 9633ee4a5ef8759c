package authd

import (
	"context"
	"encoding/json"
	"errors"
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
	ctx, cancel := s.detach(ctx) // the checks finish whatever the client does
	defer cancel()
	newEmail, err := newAddress(newEmail)
	if err != nil {
		return renameField(err, "email", "new_email")
	}
	checked, err := s.reauthenticateStepUp(ctx, c, a, password, "password", proof, EventEmailChangeRequested)
	if err != nil {
		return err
	}
	counted := false // the new address's mail (refundMail)
	err = s.inTx(ctx, func(tx *txn) error {
		u, now, err := s.recheck(ctx, tx, c, a, checked, proof, EventEmailChangeRequested)
		if err != nil {
			return err
		}
		// As the transaction reads it. (A move that committed while the
		// password was checked ended this session: recheck refused it.)
		if u.Email == newEmail {
			return errSameAddress("new_email")
		}
		// Counted once the password and the second factor passed, so that
		// a stolen access token (or the password alone) cannot spend them.
		if err := s.limit(ctx, "email-change:"+a.UserID.String(), emailChangesPerHour, time.Hour); err != nil {
			return err
		}
		// The new address's mail budget, as any mail to it: past it the
		// request answers as usual and no mail goes there (SPEC 6.7). Its
		// owner did not ask for it: a notice's share (noticeAllowed).
		mail := s.noticeAllowed(ctx, newEmail)
		counted = mail
		// A sub-address shares its mailbox's budget too (subAddressAllowed):
		// moves of many accounts to name+1@, name+2@, … reach one inbox. Not
		// a verified owner's move within their own mailbox, which strangers
		// must not be able to stop.
		sub := s.subAddressAllowed(ctx, newEmail) // counted whatever the request
		own := u.EmailVerified && mailbox(u.Email) == mailbox(newEmail)
		mail = mail && (sub || own)
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
		if notice := changeNotice(u, newEmail); notice != nil {
			if err := tx.enqueueMail(ctx, now, u, notice); err != nil {
				return err
			}
		}
		return tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailChangeRequested, ResultSuccess, u.ID, "",
			map[string]any{"mailed": mail}))
	})
	if counted {
		s.refundMail(ctx, err, newEmail)
	}
	return err
}

// CancelEmailChange voids the token's user's pending address change, if
// any: its link dies, and a mail not yet sent is withdrawn (a mistyped
// address, a change thought better of). It answers alike whether or not a
// change was pending, and writes a row only when one was, so that an
// access token alone cannot write rows without end. (Pending or not tells
// nothing of whether the address has an account: a link is minted for a
// taken address too, and sent to no one.) Returns EInvalidToken,
// EUnavailable.
func (s *Service) CancelEmailChange(ctx context.Context, c Client, a *AccessClaims) error {
	return s.inTx(ctx, func(tx *txn) error {
		u, err := s.tokenUser(tx.User(ctx, a.UserID))
		if err != nil {
			return err
		}
		now := s.now()
		if pending, err := tx.EmailChangePending(ctx, u.ID, now); err != nil || !pending {
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

// spendChangeLink marks the change link of digest used, if it is still
// usable.
func (s *Service) spendChangeLink(ctx context.Context, digest string) error {
	err := s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		v, err := changeLink(ctx, tx, digest, now)
		if err != nil {
			return err
		}
		v.Used, v.UsedAt = true, now
		return tx.UseVerificationToken(ctx, v)
	})
	if ErrorCode(err) == EInvalidToken {
		return nil
	}
	return err
}

// refuseIfTaken refuses, in tx, the change link v of u (locked) when its
// address got an account since the link was mailed: the link is spent and
// the account keeps its address (EConflict). It is asked before the second
// factor, whose proof (a recovery code) would be spent for nothing; the
// link's holder, who holds that address's mailbox, learns nothing new.
func (s *Service) refuseIfTaken(ctx context.Context, tx *txn, c Client, u *User, v *VerificationToken, now time.Time) error {
	// Not UserByEmail, which would lock that account's row while this one
	// is held: two accounts moving to each other's address would deadlock.
	taken, err := tx.EmailTaken(ctx, v.NewEmail)
	if err != nil || !taken {
		return err
	}
	v.Used, v.UsedAt = true, now
	if err := tx.UseVerificationToken(ctx, v); err != nil {
		return err
	}
	return tx.refuse(ctx, s.audit(now, c, EventEmailChanged, ResultFailure, u.ID, "email already registered", nil),
		errEmailTaken)
}

// changeEmail moves u (locked in tx, its change token just used) to
// newEmail, as the link mailed there and the password proved (moveAddress),
// verified. A locked account, and an address taken since the link was
// mailed (refuseIfTaken), were refused before the token was spent
// (VerifyEmail's recheck); one registered since that check is refused by
// the unique index (EConflict).
func (s *Service) changeEmail(ctx context.Context, tx *txn, c Client, u *User, newEmail string, now time.Time) error {
	notice := changeNotice(u, newEmail) // to the address it leaves
	ended, err := s.moveAddress(ctx, tx, u, newEmail, true, now)
	if err != nil {
		return err
	}
	if notice != nil {
		notice.Done = true
		if err := tx.enqueueMail(ctx, now, u, notice); err != nil {
			return err
		}
	}
	return tx.CreateSecurityLog(ctx, s.audit(now, c, EventEmailChanged, ResultSuccess, u.ID, "",
		map[string]any{"sessions_revoked": ended}))
}

// moveAddress moves u (locked in tx) to newEmail, which has no account:
// verified or not as told (an inactive account becomes active once
// verified; an active one inactive when not, where sign-in needs a
// verified address), every session ends (each holds tokens and sign-ins
// made under the old address), the links mailed to the old address are
// void and its queued mail withdrawn; the caller tells the old address. It
// returns how many sessions ended. Registered since the caller looked, the
// address is refused by the unique index (EConflict, here or at the
// commit).
func (s *Service) moveAddress(ctx context.Context, tx *txn, u *User, newEmail string, verified bool,
	now time.Time) (int, error) {
	// The sessions end before the address changes: an UPDATE of the email,
	// a key column, locks the user against the inserts that name it, such
	// as a refresh's new token, which a session being ended may be making
	// (docs/design.md, lock order).
	ids, err := s.endUserSessions(ctx, tx, u.ID, uuid.Nil, now, string(EventEmailChanged))
	if err != nil {
		return 0, err
	}
	// The sign-ins waiting for a second factor end with the sessions: the
	// password they proved still holds, so they are marked as ended, not as
	// voided by a new password (which would tell the refusal wrongly, and
	// hide from passwordPassedSince that someone knows the password).
	if err := tx.VoidOpenMFAChallenges(ctx, u.ID, MFAChallengeEnded); err != nil {
		return 0, err
	}
	if err := s.voidEmailChange(ctx, tx, u); err != nil {
		return 0, err
	}
	for _, typ := range VerificationTypes() {
		if err := tx.DeleteVerificationTokens(ctx, u.ID, typ); err != nil {
			return 0, err
		}
	}
	// Every mail still queued for the old address goes too: links, and
	// notices about the account, which the next owner of that address
	// (free at once) must not read; the old address hears of the change
	// alone, from the caller. An earlier address's notice of an earlier
	// move stays: a second move must not keep that owner from hearing of
	// the first.
	if err := tx.WithdrawMailsTo(ctx, u.ID, u.Email); err != nil {
		return 0, err
	}
	u.Email, u.EmailVerified, u.UpdatedAt = newEmail, verified, now
	switch {
	case verified && u.AccountStatus == StatusInactive:
		u.AccountStatus = StatusActive
	case !verified && u.AccountStatus == StatusActive && s.cfg.RequireVerifiedEmail:
		u.AccountStatus = StatusInactive // as a new account's, until the link is followed
	}
	return len(ids), tx.UpdateUser(ctx, u)
}

// linkPasswordAttempts is how many password checks a link that moves an
// account allows: the last voids it when it fails, whatever refused it
// (spentIfLast), and the owner hears of it. They count on the link, not toward the account's lock:
// whoever holds the new mailbox, a mistyped address's owner say, could
// otherwise lock the account again and again for the link's 24 hours. Each
// is counted before its hash (reserveLinkAttempt), so that parallel
// guesses cannot pass the bound, and a right password counts too (it may
// still fail on a wrong code or a lock: the link holder must not learn it
// for free). The re-authentication budget (reauthPerUser a minute) bounds
// them too, and a wrong second-factor code counts toward the lock, as
// every code given past the password does.
const linkPasswordAttempts = 5

// linkPasswordsPerDay bounds the password checks made at the change links
// that would move one account to one address, across those links: each
// new link's attempts start from nothing, so an owner who asks again for
// the same mistyped address would otherwise give its holder five more
// guesses a link. Two links' worth a day (from the first check). A check
// counts once the password was checked, and before its result is told:
// past the budget every answer is the same 429, right password or wrong,
// so the guesses tell nothing (each still spends one of its link's five).
// A password the busy workers did not check, or a link that died first,
// spends none, lest a flood of logins spend the owner's. The budget is
// the address's on this account, not the account's, so that the holder of
// one address cannot spend the owner's changes to another. Like every
// limit it fails open when the rate-limit store does; each link's own
// five, counted in the database, still hold.
const linkPasswordsPerDay = 2 * linkPasswordAttempts

// The refusals of a change link whose password checks ran out.
var (
	errLinkVoided = &Error{Code: EInvalidToken,
		Message: "The password is incorrect, and this link is now void after too many attempts; ask for the change again."}
	errLinkSpent = &Error{Code: EInvalidToken,
		Message: "This link is now void after too many password attempts; ask for the change again."}
	errLinkFactorVoided = &Error{Code: EInvalidToken,
		Message: "The second factor was not proved, and this link is now void after too many attempts; ask for the change again."}
)

// linkVoidedUnderLock is lock, the refusal of a lock that the attempt
// voiding its change link set or met: the lock is the answer (423), and
// it says the link is void too (LinkVoided).
func linkVoidedUnderLock(lock error) error {
	var wait time.Duration
	if e, ok := errors.AsType[*Error](lock); ok {
		wait = e.RetryAfter
	}
	return &Error{Code: EAccountLocked, RetryAfter: wait, Err: errLinkFactorVoided,
		Message: "The account is locked, and this link is now void after too many attempts; ask for the change again once the lock is over."}
}

// LinkVoided reports whether err refused a change link because its
// password attempts ran out, as its message says: a page can then tell
// why rather than speak of a dead link in general.
func LinkVoided(err error) bool {
	return errors.Is(err, errLinkVoided) || errors.Is(err, errLinkSpent) || errors.Is(err, errLinkFactorVoided)
}

// errCeremonyGone answers, at a change link, a passkey assertion that
// answers no open ceremony of the link's user.
var errCeremonyGone = &Error{Code: EInvalid, Message: "The passkey's ceremony expired or was used; confirm with the passkey again.",
	Fields: []FieldError{{Field: "passkey", Message: "answers no open ceremony of this account: begin a new one"}}}

// checkChangeLink checks, before the link's transaction, what following v
// (a usable link that moves its account) needs besides the link: the
// account's password and, when the user has a second factor, a proof of a
// possible shape (needStepUp; the proof itself is checked in the
// transaction, before the link is spent). Each password check counts on
// the link (linkPasswordAttempts) and attempt is this one's number; a wrong
// password keeps the link good until the last, which voids it. Whether an
// attempt is the last is told by its own number, not by the count, which
// checks still in flight raise.
func (s *Service) checkChangeLink(ctx context.Context, c Client, v *VerificationToken, password string,
	proof StepUp) (checked *User, attempt int, err error) {
	if password == "" {
		return nil, 0, invalidField("password", "is required: a link that moves the account to a new address needs the account's password")
	}
	if err := s.needStepUp(ctx, v.UserID, proof); err != nil {
		return nil, 0, forLink(err)
	}
	if len(proof.Passkey) > 0 {
		if err := s.ceremonyOpen(ctx, v.UserID, proof.Passkey); err != nil {
			return nil, 0, err
		}
	}
	if checksUnderWay(v, s.now()) {
		// Asked before passwordAgain, which would spend the owner's
		// re-authentication budget on a check that cannot be made.
		return nil, 0, errLinkBusy
	}
	reserved := false
	u, ok, err := s.passwordAgain(ctx, c, v.UserID, password, EventEmailChanged, func() (err error) {
		attempt, err = s.reserveLinkAttempt(ctx, c, v.Token)
		reserved = true
		return err
	})
	if reserved && ErrorCode(err) == EInvalidToken && !LinkVoided(err) {
		// The link died (used, voided) since it was read: the try is
		// logged on the account, as a wrong password that finds it gone
		// is (link_gone). One the reservation voided has its row.
		if lerr := s.logEvent(ctx, s.audit(s.now(), c, EventEmailChanged, ResultFailure, v.UserID,
			"link gone before its password was checked", map[string]any{"link_gone": true})); lerr != nil {
			return nil, 0, lerr
		}
	}
	if err != nil && attempt > 0 {
		// No password was checked (the hashing workers were busy): the
		// attempt goes back, lest a flood of logins spend the owner's,
		// and is no attempt (spentIfLast must not take it for the last:
		// another check may hold that number now).
		s.refundLinkAttempt(ctx, v.Token)
		attempt = 0
	}
	if err != nil {
		return nil, attempt, err
	}
	if err := s.limitLinkPasswords(ctx, c, v, attempt); err != nil {
		return nil, attempt, err
	}
	if ok {
		return u, attempt, nil
	}
	return nil, attempt, s.inTx(ctx, func(tx *txn) error {
		u, err := s.tokenUser(tx.User(ctx, v.UserID))
		if err != nil {
			return err
		}
		now := s.now()
		// A lock that overtook the check answers as it does a right
		// password (stillChecked), so that the two are not told apart.
		if err := s.refuseIfBarred(ctx, tx, c, u, EventEmailChanged, now); err != nil {
			return err
		}
		v, err := changeLink(ctx, tx, v.Token, now)
		if ErrorCode(err) == EInvalidToken { // voided or used meanwhile: the guess is logged all the same
			return tx.refuse(ctx, s.audit(now, c, EventEmailChanged, ResultFailure, u.ID, reasonWrongPassword,
				map[string]any{"link_gone": true}), err)
		}
		if err != nil {
			return err
		}
		last := attempt >= linkPasswordAttempts
		l := s.audit(now, c, EventEmailChanged, ResultFailure, u.ID, reasonWrongPassword,
			map[string]any{"link_attempts": attempt, "link_voided": last})
		if !last {
			return tx.refuse(ctx, l, wrongPassword("password"))
		}
		if err := s.voidChangeLink(ctx, tx, u, v, now); err != nil {
			return err
		}
		return tx.refuse(ctx, l, errLinkVoided)
	})
}

// limitLinkPasswords counts a checked password against the budget of v's
// user and address (linkPasswordsPerDay): past it, ERateLimited, whatever
// the password was, and a row.
func (s *Service) limitLinkPasswords(ctx context.Context, c Client, v *VerificationToken, attempt int) error {
	key := "link-password:" + v.UserID.String() + ":" + s.emailKey(v.NewEmail)
	err := s.limit(ctx, key, linkPasswordsPerDay, 24*time.Hour)
	e, ok := errors.AsType[*Error](err)
	if !ok || e.Code != ERateLimited {
		return err
	}
	if err := s.logEvent(ctx, s.audit(s.now(), c, EventEmailChanged, ResultFailure, v.UserID,
		"too many password attempts at links to this address", map[string]any{"link_attempts": attempt})); err != nil {
		return err
	}
	return &Error{Code: ERateLimited, RetryAfter: e.RetryAfter,
		Message: "Too many password attempts at links to this address today; try again later."}
}

// errLinkBusy refuses a password check at a change link whose attempts
// are all taken by checks still under way: one of them may yet follow the
// link (a user who sent the form several times), and the last of them
// voids it if it fails (endSpentLink).
var errLinkBusy = &Error{Code: ERateLimited, RetryAfter: time.Second,
	Message: "This link's password attempts are all being checked; try again in a moment."}

// linkCheckLimit is longer than any password check at a change link can
// take (its flow is detached for detachedFlowTimeout): a link whose last
// attempt was reserved longer ago than this, and never decided, is spent.
const linkCheckLimit = 2 * detachedFlowTimeout

// checksUnderWay reports whether v's attempts are all taken by checks that
// may still be under way (errLinkBusy), rather than spent.
func checksUnderWay(v *VerificationToken, now time.Time) bool {
	return v.Attempts >= linkPasswordAttempts && now.Sub(v.AttemptedAt) <= linkCheckLimit
}

// reserveLinkAttempt counts a password check on the change link of digest
// before the password is hashed, and returns its number. With none left
// it refuses (errLinkBusy) and voids nothing, while the checks that took
// them may be under way: the attempt that took the last decides, voiding
// the link whatever made it fail (endSpentLink). Past linkCheckLimit the
// last check never decided (its process died, the database went away):
// the link is void now (errLinkSpent), the owner told.
func (s *Service) reserveLinkAttempt(ctx context.Context, c Client, digest string) (int, error) {
	attempt := 0
	err := s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		v, err := changeLink(ctx, tx, digest, now)
		if err != nil {
			return err
		}
		if checksUnderWay(v, now) {
			return errLinkBusy
		}
		if v.Attempts >= linkPasswordAttempts {
			return s.voidSpentLink(ctx, tx, c, v, now, errLinkSpent)
		}
		v.Attempts++
		v.AttemptedAt = now
		attempt = v.Attempts
		return tx.SetVerificationAttempts(ctx, v)
	})
	if err != nil {
		return 0, err
	}
	return attempt, nil
}

// spentIfLast is err, the refusal of a change link's password attempt
// number attempt, once the link is void if that was its last attempt
// (endSpentLink) and the refusal voided nothing itself.
func (s *Service) spentIfLast(ctx context.Context, c Client, digest string, attempt int, err error) error {
	// An outage's refusal (503: a serialization failure, the database
	// away) decides nothing: the link waits, and a check after
	// linkCheckLimit ends it if need be (reserveLinkAttempt).
	if err == nil || attempt < linkPasswordAttempts || LinkVoided(err) || ErrorCode(err) == EUnavailable {
		return err
	}
	return s.endSpentLink(ctx, c, digest, err)
}

// endSpentLink voids the change link of digest whose last attempt failed
// on something that voids nothing by itself (a lock that overtook it, the
// day's budget), and tells the owner, as a wrong password on it would: a
// link with no attempt left must not stay (its owner untold) until it
// expires. An attempt given back (the busy workers' refund) leaves the
// link as it is. answer is the attempt's refusal; the one returned says
// the link is void too. It runs on a context of its own: the flow's may
// have run out, which must not leave the link undecided.
func (s *Service) endSpentLink(ctx context.Context, c Client, digest string, answer error) error {
	ctx, cancel := s.detach(ctx) // a deadline of its own: the flow's may have run out
	defer cancel()
	voided := false
	err := s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		v, err := changeLink(ctx, tx, digest, now)
		if err != nil || v.Attempts < linkPasswordAttempts {
			return err
		}
		voided = true
		return s.voidSpentLink(ctx, tx, c, v, now, nil)
	})
	switch {
	case err != nil && ErrorCode(err) != EInvalidToken:
		s.logger.WarnContext(ctx, "a change link with no password attempt left could not be voided", "err", err)
		return answer
	case !voided:
		return answer
	}
	// A lock's or the budget's answer stays, saying the link is void too.
	switch e, _ := errors.AsType[*Error](answer); ErrorCode(answer) {
	case EAccountLocked:
		return linkVoidedUnderLock(answer)
	case ERateLimited:
		return &Error{Code: ERateLimited, RetryAfter: e.RetryAfter, Err: errLinkSpent,
			Message: "Too many password attempts at links to this address today, and this link is now void; ask for the change again."}
	}
	return errLinkSpent
}

// voidSpentLink voids v, a change link with no password attempt left, in
// tx, tells the owner, and logs it on the account; refused, when not nil,
// is the answer (tx.refuse: the void commits).
func (s *Service) voidSpentLink(ctx context.Context, tx *txn, c Client, v *VerificationToken, now time.Time, refused error) error {
	u, err := tx.User(ctx, v.UserID)
	if err != nil {
		return err
	}
	if err := s.voidChangeLink(ctx, tx, u, v, now); err != nil {
		return err
	}
	l := s.audit(now, c, EventEmailChanged, ResultFailure, u.ID, "no password attempts left",
		map[string]any{"link_attempts": v.Attempts, "link_voided": true})
	if refused != nil {
		return tx.refuse(ctx, l, refused)
	}
	return tx.CreateSecurityLog(ctx, l)
}

// ceremonyOpen reads, without taking it, the ceremony a passkey assertion
// (of a possible shape) answers: errCeremonyGone unless it is an open
// step-up ceremony of user. The transaction's takeChallenge decides; this
// spares a password check, and one of a link's attempts, for a ceremony
// that expired while the user typed.
func (s *Service) ceremonyOpen(ctx context.Context, user uuid.UUID, assertion []byte) error {
	parsed, err := parseAssertion(assertion)
	if err != nil {
		return renameField(err, "credential", "passkey")
	}
	digest, ok := challengeDigest(parsed.Response.CollectedClientData.Challenge)
	if !ok {
		return errCeremonyGone
	}
	ch, err := s.store.WebAuthnChallenge(ctx, digest)
	if ErrorCode(err) == ENotFound {
		return errCeremonyGone
	}
	if err != nil {
		return err
	}
	if ch.closedFor(PurposeStepUp, s.now()) != "" || ch.UserID != user {
		return errCeremonyGone
	}
	return nil
}

// refundLinkAttempt gives back an attempt reserveLinkAttempt counted for a
// password that was not checked. Best effort: a failure leaves the attempt
// spent (logged), which keeps the bound.
func (s *Service) refundLinkAttempt(ctx context.Context, digest string) {
	ctx, cancel := s.detach(ctx) // a deadline of its own: the flow's may have run out
	defer cancel()
	err := s.inTx(ctx, func(tx *txn) error {
		v, err := changeLink(ctx, tx, digest, s.now())
		if err != nil || v.Attempts == 0 {
			return err
		}
		v.Attempts--
		return tx.SetVerificationAttempts(ctx, v)
	})
	if err != nil && ErrorCode(err) != EInvalidToken {
		s.logger.WarnContext(ctx, "a change link's unchecked password attempt stays counted", "err", err)
	}
}

// changeLink reads the change link of digest in tx, locked with its user
// (ownedRow's lock order): EInvalidToken when it is gone (voided), used or
// expired.
func changeLink(ctx context.Context, tx *txn, digest string, now time.Time) (*VerificationToken, error) {
	v, err := tx.VerificationToken(ctx, digest)
	if ErrorCode(err) == ENotFound || (err == nil && !v.Usable(now)) {
		return nil, errInvalidToken
	}
	return v, err
}

// voidChangeLink voids u's change whose link v ran out of password
// attempts and tells u's address, whose owner asked for it (or whose
// password someone has).
func (s *Service) voidChangeLink(ctx context.Context, tx *txn, u *User, v *VerificationToken, now time.Time) error {
	if err := s.voidEmailChange(ctx, tx, u); err != nil {
		return err
	}
	notice := changeNotice(u, v.NewEmail)
	if notice == nil {
		return nil
	}
	notice.Voided = true
	return tx.enqueueMail(ctx, now, u, notice)
}

// changeNotice is the email_change_notice that tells u's address of a
// change of the account's address to newEmail, or nil when that address
// reaches no one (.invalid). One never verified (where sign-in does not
// need a verified address) is told of the change, as it may be the
// owner's, but not where to: it may be a stranger's, a mistyped one.
func changeNotice(u *User, newEmail string) *OutboxMail {
	if reservedDomain(u.Email) {
		return nil
	}
	m := &OutboxMail{Kind: MailEmailChangeNotice, To: u.Email}
	if u.EmailVerified {
		m.NewEmail = newEmail
	}
	return m
}

// EmailChangeMethods returns, for a usable link that moves an account, the
// methods by which its user can pass the second factor the link asks for
// (nil when the user has none), so that its page can ask for them at once.
// Any other token is EInvalidToken (uncounted: the page checked it first
// with CheckToken). Returns EUnavailable too.
func (s *Service) EmailChangeMethods(ctx context.Context, token string) ([]string, error) {
	v, err := s.usableToken(ctx, token, VerifyEmail)
	if err != nil {
		return nil, err
	}
	if v.NewEmail == "" {
		return nil, errInvalidToken
	}
	return s.mfaMethods(ctx, s.store, v.UserID)
}

// linkCeremoniesPerHour bounds the passkey ceremonies one change link
// begins an hour: each is a row, and the link is all a stranger at a
// mistyped address needs to begin them. The budget is the link's, not
// the user's, whose own ceremonies it must not spend.
const linkCeremoniesPerHour = 10

// BeginEmailChangeStepUp begins a passkey ceremony whose assertion is the
// second factor's proof for following token, a link that moves an account
// (VerifyEmail's proof.Passkey). A dead link counts as the pages' do
// (CheckToken). Returns EInvalidToken (a dead link, or one that moves no
// account), ENotFound (no passkey, or passkeys off), ERateLimited,
// EUnavailable.
func (s *Service) BeginEmailChangeStepUp(ctx context.Context, c Client, token string) (json.RawMessage, error) {
	v, err := s.liveLink(ctx, c, token, VerifyEmail)
	if err != nil {
		return nil, err
	}
	if v.NewEmail == "" {
		return nil, errInvalidToken
	}
	rp, err := s.relyingParty()
	if err != nil {
		return nil, err
	}
	if err := s.limit(ctx, "link-ceremony:"+v.ID.String(), linkCeremoniesPerHour, time.Hour); err != nil {
		return nil, err
	}
	u, err := s.tokenUser(s.store.User(ctx, v.UserID))
	if err != nil {
		return nil, err
	}
	keys, err := s.store.Passkeys(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, Errorf(ENotFound, "The account has no passkey.")
	}
	return s.stepUpOptions(ctx, rp, u, keys)
}

// forLink marks err, when it asks for the second factor, as a change
// link's (MFARequired.Link).
func forLink(err error) error {
	if m, ok := errors.AsType[*MFARequired](err); ok {
		m.Link = true
	}
	return err
}
