package authd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
)

// MailAccountDeleted is the notice sent when an account is erased.
const MailAccountDeleted MailKind = "account_deleted"

// MailKinds lists every kind of mail, in schema order.
func MailKinds() []MailKind {
	return []MailKind{MailVerifyEmail, MailPasswordReset, MailRegisterNotice, MailAccountLocked,
		MailPasswordChanged, MailAccountDeleted, MailMFAReset, MailFactorChanged, MailEmailChange,
		MailEmailChangeTaken, MailEmailChangeNotice}
}

// ParseMailKind rejects anything but the labels of MailKinds.
func ParseMailKind(s string) (MailKind, error) { return parseEnum("mail kind", s, MailKinds()) }

// OutboxMail is a mail in the durable outbox (table mail_outbox). It holds
// no secret: the one-time link of a verification or reset mail is minted
// when the mail is delivered.
type OutboxMail struct {
	ID         uuid.UUID
	Kind       MailKind
	UserID     uuid.UUID // Nil once the account is gone
	To         string
	Until      time.Time    // with MailAccountLocked
	Removed    MFARemoval   // with MailMFAReset
	Change     FactorChange // with MailFactorChanged
	AfterCodes bool         // with MailAccountLocked: wrong codes set the lock
	NewEmail   string       // with MailEmailChangeNotice: the address that replaces To
	Done       bool         // with MailEmailChangeNotice: it has replaced it
	Voided     bool         // with MailEmailChangeNotice: its link ran out of password attempts
	// ByAdministrator, with a Done MailEmailChangeNotice: support moved
	// the account (NewEmail is then not told).
	ByAdministrator bool
	CreatedAt       time.Time
	NextAttemptAt   time.Time
	Attempts        int
	ClaimedUntil    time.Time
	Claim           uuid.UUID // the claim that holds it, set by ClaimMail
	LastError       string
	DeadAt          time.Time
}

// Outbox delivery policy. A sender claims one mail at a time, right before
// minting its link and sending it, so that its lease covers one send and
// not a queue of them: a lease that ran out mid-batch let another instance
// send the tail again, and its new link voided the first. The timeouts
// alone do not keep a sender within its lease (a paused VM ignores them),
// so it also checks that its claim still holds the mail, and extends the
// lease, as it mints the link and again right before it sends.
const (
	MaxMailAttempts = 8                // then the mail is dead
	mailLease       = 3 * time.Minute  // a claimed mail is re-claimable after this
	mailMintTimeout = 10 * time.Second // minting a verification or reset link
	// a send: the relay may take a while to answer the message's final dot
	// (mail.SMTP), and a send given up on may have been delivered
	mailSendTimeout = 90 * time.Second
	// each of the sender's other calls to the store: claiming a mail,
	// extending its lease, and recording its outcome after the send
	// (whatever the pass's own deadline), so that a database that stops
	// answering holds the sender a while, not for good
	mailStoreTimeout = 10 * time.Second
	// recording a mail cut by its pass's end (a stop's deadline), and a sent
	// mail's outcome once that end has come (recordContext)
	mailCutRecordTimeout = 2 * time.Second
	// how far instances' clocks may disagree, and recording an outcome
	// may take, within a lease
	mailLeaseSlack = time.Minute
)

// The lease must outlive the minting and the send with room to spare for
// recording the outcome and for clocks that differ between instances; the
// conversion fails to compile otherwise.
const _ = uint64(mailLease - mailMintTimeout - mailSendTimeout - mailLeaseSlack)

// mailBackoff is the wait before attempt n+1: 10s, 40s, 2m40s, … capped at
// an hour, with jitter so that instances do not retry in lockstep.
func mailBackoff(attempts int) time.Duration {
	d := 10 * time.Second << (2 * min(attempts-1, 6))
	d = min(d, time.Hour)
	return d + rand.N(d/10+1)
}

// MailArchive is a Mailer that keeps copies of what it sent (the dev
// mailer). Erasure and retention must reach those copies too (SPEC §7).
type MailArchive interface {
	// Forget removes every copy of a mail to address, or about the
	// account user (uuid.Nil: none): mails to its earlier and pending
	// addresses too.
	Forget(ctx context.Context, user uuid.UUID, address string) error
	// Prune removes the copies made before before.
	Prune(ctx context.Context, before time.Time) error
}

// forgetMail removes what the mailer kept of an erased account (user, or
// uuid.Nil when it is not known) and address. The erasure has committed by
// then, so a failure is logged (without the address) rather than returned.
func (s *Service) forgetMail(ctx context.Context, user uuid.UUID, address string) {
	if s.archive == nil || address == "" && user == uuid.Nil {
		return
	}
	if err := s.archive.Forget(ctx, user, address); err != nil {
		s.logger.Error("removing the mail kept for an erased address", "err", err)
	}
}

// OutboxStats counts the outbox: mails waiting and mails given up on.
type OutboxStats struct {
	Pending int
	Dead    int
}

// MailEvent is what happened to one delivery attempt, for metrics.
type MailEvent string

// Mail delivery outcomes.
const (
	MailSent    MailEvent = "sent"
	MailRetried MailEvent = "retried"
	MailDead    MailEvent = "dead"
	MailDropped MailEvent = "dropped" // its account is gone or no longer needs it
)

// enqueue adds a mail to the outbox in the flow's transaction.
func (t *txn) enqueue(ctx context.Context, now time.Time, kind MailKind, user *User, until time.Time) error {
	return t.enqueueMail(ctx, now, user, &OutboxMail{Kind: kind, Until: until})
}

// enqueueMail adds m, a mail of kind with its template data, about user in
// the flow's transaction: to m.To, or when that is empty to user's address.
func (t *txn) enqueueMail(ctx context.Context, now time.Time, user *User, m *OutboxMail) error {
	if m.To == "" {
		m.To = user.Email
	}
	m.ID, m.UserID, m.CreatedAt, m.NextAttemptAt = NewID(), user.ID, now, now
	if err := t.EnqueueMail(ctx, m); err != nil {
		return err
	}
	t.mailed = true
	return nil
}

// Factor notices skip the address's mail budget, which anyone can spend:
// an addition is always told, and bounded by limitFactorAdds; so is a
// removal (each needs a factor, which an addition made); replacing the
// recovery codes, which each new set can prove again, is told up to
// factorNoticesPerHour an account, so that a session holding a recovery
// code cannot replace them in a loop to bury an addition's notice in
// hundreds of others, to spend the relay's quota, or to spend a budget a
// removal's notice would then find empty.
const (
	factorAddsPerHour    = 10
	factorNoticesPerHour = 5
)

// limitFactorAdds counts the start of an addition of a second factor by
// the token's user (a TOTP enrolment, a passkey registration) whose
// password (and factor) checked, at most factorAddsPerHour: each one that
// finishes mails a notice. Counted after the checks, so that a stolen
// access token alone cannot spend the owner's additions. ERateLimited.
func (s *Service) limitFactorAdds(ctx context.Context, a *AccessClaims) error {
	return s.limit(ctx, "factor-add:"+a.UserID.String(), factorAddsPerHour, time.Hour)
}

// factorNotice queues in tx the notice of a change to u's second factors,
// whatever the address's mail budget (FactorChange): always, but for a
// replacement of the recovery codes beyond factorNoticesPerHour.
func (s *Service) factorNotice(ctx context.Context, tx *txn, now time.Time, u *User, change FactorChange) error {
	if change == ChangeCodesReplaced &&
		s.limit(ctx, "factor-notice:"+u.ID.String(), factorNoticesPerHour, time.Hour) != nil {
		return nil
	}
	return tx.enqueueMail(ctx, now, u, &OutboxMail{Kind: MailFactorChanged, Change: change})
}

// MailData is m's template data as the outbox stores it (the data column,
// a JSON object), nil when it has none; SetData reads it back. Both stores
// use it, so that the two keep the same shape.
func MailData(m *OutboxMail) map[string]any {
	d := map[string]any{}
	if !m.Until.IsZero() {
		d["until"] = m.Until.UTC().Format(time.RFC3339Nano)
	}
	if !m.Removed.IsZero() {
		d["removed"] = map[string]any{"totp": m.Removed.TOTP, "passkeys": m.Removed.Passkeys,
			"recovery_codes": m.Removed.RecoveryCodes}
	}
	if m.Change != "" {
		d["change"] = string(m.Change)
	}
	if m.AfterCodes {
		d["after_codes"] = true
	}
	if m.NewEmail != "" {
		d["new_email"] = m.NewEmail
	}
	if m.Done {
		d["done"] = true
	}
	if m.Voided {
		d["voided"] = true
	}
	if m.ByAdministrator {
		d["by_administrator"] = true
	}
	if len(d) == 0 {
		return nil
	}
	return d
}

// SetData fills m's template data from what MailData stored; what it does
// not know is ignored.
func (m *OutboxMail) SetData(d map[string]any) {
	if until, ok := d["until"].(string); ok {
		m.Until, _ = time.Parse(time.RFC3339Nano, until)
	}
	if r, ok := d["removed"].(map[string]any); ok {
		m.Removed.TOTP, _ = r["totp"].(bool)
		passkeys, _ := r["passkeys"].(float64)
		codes, _ := r["recovery_codes"].(float64)
		m.Removed.Passkeys, m.Removed.RecoveryCodes = int(passkeys), int(codes)
	}
	if change, ok := d["change"].(string); ok {
		m.Change = FactorChange(change)
	}
	m.AfterCodes, _ = d["after_codes"].(bool)
	m.NewEmail, _ = d["new_email"].(string)
	m.Done, _ = d["done"].(bool)
	m.Voided, _ = d["voided"].(bool)
	m.ByAdministrator, _ = d["by_administrator"].(bool)
}

// wakeSender tells this instance's sender that mail is waiting.
func (s *Service) wakeSender() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// RunOutbox delivers mail until ctx ends: whenever a flow of this instance
// queues one, and every poll interval for mail queued elsewhere or due for
// a retry. When ctx ends it claims no more, finishes the mail in hand and
// makes one last pass (of at most flushTimeout), so that a graceful
// shutdown sends what the last requests queued; what it cannot send stays
// in the outbox for the next start. cut ends the work in hand, the mail
// being sent with it (a stop's deadline): such a mail is queued again, due
// at once, for the next pass here or on another instance.
func (s *Service) RunOutbox(ctx, cut context.Context, poll time.Duration) {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	failures := passLog{logger: s.logger}
	pass := func(claiming, work context.Context) {
		_, err := s.deliverMail(claiming, work)
		for _, c := range []context.Context{claiming, work} {
			if c.Err() != nil && errors.Is(err, c.Err()) {
				return // stopped or cut: the run's end, not a failure or a recovery
			}
		}
		failures.note(s.now(), err)
	}
	for {
		// A mail claimed is sent and recorded whatever ctx does; none is
		// claimed once it ends, so that a backlog behind a relay that
		// times out holds a shutdown for one mail, not for all of them.
		pass(ctx, cut)
		select {
		case <-cut.Done(): // the stop's deadline came before the requests were done
			failures.stop(s.now())
			return
		case <-ctx.Done():
			flush, cancel := context.WithTimeout(cut, flushTimeout)
			defer cancel()
			pass(flush, flush)
			switch {
			case cut.Err() != nil:
				s.logger.Warn("mail outbox: the stop's deadline ended the last pass; mail still queued goes from " +
					"another instance or at the next start")
			case flush.Err() != nil:
				s.logger.Warn("mail outbox: the last pass ran out of time; mail still queued goes from another "+
					"instance or at the next start", "limit", flushTimeout)
			}
			failures.stop(s.now())
			return
		case <-s.wake:
			// A moment first: the request that queued the mail answers
			// before its delivery competes for the cores and the
			// database, so that its timing does not tell whether it
			// mailed (SPEC 6.6); mail queued meanwhile goes in this pass.
			select {
			case <-time.After(wakeDelay):
			case <-ctx.Done():
			}
		case <-tick.C:
		}
	}
}

// ranOut reports whether ctx has ended or its deadline has passed: a
// connection given that deadline (the SMTP client's) may fail on it a
// moment before ctx's own timer ends ctx, and that failure is ctx's too.
func ranOut(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && !time.Now().Before(d)
}

// passLog tells the outbox's failed passes: the first of a run at once,
// then at most a line each passLogInterval with how many failed since (and
// at once an error other than the last told), and the run's end. An outage of the database fails every pass, each poll
// interval, and an error line each would drown the lines that tell what
// else it broke.
type passLog struct {
	logger  *slog.Logger
	failing time.Time // when the run of failed passes began; zero: none
	told    time.Time // the run's last line
	failed  int       // passes failed since that line
	last    string    // the error that line told
}

// passLogInterval is the least time between two lines of one run of
// failed outbox passes.
const passLogInterval = time.Minute

// note tells the outcome of a pass that ended at now (err nil: it worked).
func (l *passLog) note(now time.Time, err error) {
	switch {
	case err == nil && l.failing.IsZero():
	case err == nil:
		l.logger.Info("mail outbox: passes work again", "failing_for", now.Sub(l.failing).Round(time.Second),
			"failed_passes", l.failed)
		l.failing, l.told, l.failed = time.Time{}, time.Time{}, 0
	case l.failing.IsZero():
		l.logger.Error("mail outbox", "err", err)
		l.failing, l.told, l.last = now, now, err.Error()
	case now.Sub(l.told) < passLogInterval && err.Error() == l.last:
		l.failed++
	default: // a minute on, or another error (the relay's after the database's)
		l.logger.Error("mail outbox: passes still failing", "err", err, "failing_for", now.Sub(l.failing).Round(time.Second),
			"failed_passes", l.failed+1)
		l.told, l.failed, l.last = now, 0, err.Error()
	}
}

// stop tells, at the sender's end, the failed passes of a run not yet
// told: the last of a shutdown's pass, say.
func (l *passLog) stop(now time.Time) {
	if !l.failing.IsZero() && l.failed > 0 {
		l.logger.Error("mail outbox: passes still failing as the sender stops", "failing_for",
			now.Sub(l.failing).Round(time.Second), "failed_passes", l.failed)
	}
}

// wakeDelay is how long the outbox sender, woken by a flow that queued
// mail, waits before its pass.
const wakeDelay = 50 * time.Millisecond

// flushTimeout bounds the outbox's last pass at shutdown.
const flushTimeout = 10 * time.Second

// DeliverMail makes one pass over the outbox: it claims the mails that are
// due, one at a time, delivers each and records its outcome. It returns how
// many it sent.
func (s *Service) DeliverMail(ctx context.Context) (int, error) {
	return s.deliverMail(ctx, ctx)
}

// deliverMail is DeliverMail claiming while claiming has not ended (then
// its error), each mail claimed sent and recorded under work.
func (s *Service) deliverMail(claiming, work context.Context) (int, error) {
	sent := 0
	for {
		if err := claiming.Err(); err != nil {
			return sent, err
		}
		m, err := s.claimMail(work)
		if err != nil || m == nil {
			return sent, err
		}
		ok, err := s.deliver(work, m)
		if err != nil {
			return sent, err
		}
		if ok {
			sent++
		}
	}
}

// claimMail claims the mail due now that has waited longest, nil when none is.
func (s *Service) claimMail(ctx context.Context) (*OutboxMail, error) {
	ctx, cancel := context.WithTimeout(ctx, mailStoreTimeout)
	defer cancel()
	return s.store.ClaimMail(ctx, NewID(), s.now(), mailLease)
}

// extendMailClaim moves m's lease a whole lease on while m's claim holds
// it (ENotFound when it does not).
func (s *Service) extendMailClaim(ctx context.Context, m *OutboxMail) error {
	ctx, cancel := context.WithTimeout(ctx, mailStoreTimeout)
	defer cancel()
	until := s.now().Add(mailLease)
	err := s.store.ExtendMailClaim(ctx, m.ID, m.Claim, until)
	if err == nil {
		m.ClaimedUntil = until
	}
	return err
}

// deliver sends one claimed mail. Only errors of the store are returned;
// a failed send is recorded for a retry.
func (s *Service) deliver(ctx context.Context, m *OutboxMail) (bool, error) {
	mail := Mail{Kind: m.Kind, To: m.To, UserID: m.UserID, Until: m.Until, At: m.CreatedAt, Removed: m.Removed, Change: m.Change,
		AfterCodes: m.AfterCodes, NewEmail: m.NewEmail, Done: m.Done, Voided: m.Voided,
		ByAdministrator: m.ByAdministrator}
	if m.Kind == MailVerifyEmail || m.Kind == MailPasswordReset || m.Kind == MailEmailChange {
		mintCtx, cancel := context.WithTimeout(ctx, mailMintTimeout)
		var holder *User // with MailEmailChange: the account the new address has
		var err error
		if m.Kind == MailEmailChange {
			holder, err = s.addressHolder(mintCtx, m.To)
		}
		var link string
		if err == nil {
			link, err = s.mintLink(mintCtx, m, holder)
		}
		cancel()
		if errors.Is(err, errClaimLapsed) {
			s.claimLapsed(m)
			return false, nil
		}
		if err != nil && ranOut(ctx) {
			return false, s.requeueCut(ctx, m, err)
		}
		if err != nil {
			return false, err
		}
		if link == "" {
			s.observeMail(m, MailDropped)
			ctx, cancel := recordContext(ctx)
			defer cancel()
			_, err := s.settleMail(ctx, m, s.store.CompleteMail(ctx, m.ID, m.Claim), false)
			return false, err
		}
		mail.Link = link
		if holder != nil {
			// The link was minted all the same, so that the requester's
			// data tells nothing, but goes to no one: the address's owner
			// is told that someone asked for it.
			// It is about the holder's account, not the requester's.
			mail.Kind, mail.Link, mail.UserID = MailEmailChangeTaken, "", holder.ID
		}
	}
	if err := s.extendMailClaim(ctx, m); ErrorCode(err) == ENotFound {
		s.claimLapsed(m)
		return false, nil
	} else if err != nil && ranOut(ctx) {
		return false, s.requeueCut(ctx, m, err)
	} else if err != nil {
		return false, err
	}
	sendCtx, cancel := context.WithTimeout(ctx, mailSendTimeout)
	err := s.mailer.Send(sendCtx, mail)
	cancel()
	cut := err != nil && ranOut(ctx) // the pass's time ran out (a stop's last pass), not the relay's
	// The outcome is recorded whatever became of the pass meanwhile (a
	// shutdown's last pass out of time as the relay answered): a sent mail
	// left claimed is sent again once its lease lapses, and a second
	// verification or reset mail voids the link of the first.
	ctx, cancel = recordContext(ctx)
	defer cancel()
	if m.Kind == MailAccountDeleted {
		// The erasure may have run where no archive is (authd admin), or
		// raced a mail that was being sent.
		s.forgetMail(ctx, m.UserID, m.To)
	}
	now := s.now()
	switch {
	case err == nil:
		s.observeMail(m, MailSent)
		if _, err := s.settleMail(ctx, m, s.store.CompleteMail(ctx, m.ID, m.Claim), true); err != nil {
			s.logger.Error("mail sent but not recorded as sent: it may be sent again once its claim lapses",
				"mail_id", m.ID, "kind", m.Kind, "lease", mailLease, "err", err)
			return true, err
		}
		return true, nil
	case cut:
		return false, s.requeueCut(ctx, m, err)
	case m.Attempts >= MaxMailAttempts || errors.Is(err, ErrUndeliverable):
		var recorded error
		if m.Kind == MailAccountDeleted {
			// The erased address must not outlive the notice (SPEC §6.8).
			recorded = s.store.CompleteMail(ctx, m.ID, m.Claim)
		} else {
			recorded = s.store.KillMail(ctx, m.ID, m.Claim, now, errorText(err))
		}
		// Told once recorded: a claim that lapsed leaves the mail to
		// another sender, which may have sent it.
		if held, err2 := s.settleMail(ctx, m, recorded, false); !held || err2 != nil {
			return false, err2
		}
		why := "mail dead after its last attempt"
		if errors.Is(err, ErrUndeliverable) {
			why = "mail dead: its recipient cannot receive mail"
		}
		s.logger.Error(why, "mail_id", m.ID, "kind", m.Kind, "attempts", m.Attempts, "err", err)
		s.observeMail(m, MailDead)
		return false, nil
	default:
		next := now.Add(mailBackoff(m.Attempts))
		// Logged once the retry is recorded: until then the claim holds the mail.
		if held, err := s.settleMail(ctx, m, s.store.RetryMail(ctx, m.ID, m.Claim, next, errorText(err)), false); !held || err != nil {
			return false, err
		}
		s.logger.Warn("mail delivery failed; will retry", "mail_id", m.ID, "kind", m.Kind, "attempt", m.Attempts,
			"retry_at", next, "err", err)
		s.observeMail(m, MailRetried)
		return false, nil
	}
}

// recordContext is the context in which deliver records a mail's outcome
// once the relay has answered (or a mail dropped): whatever became of the
// pass (ctx) meanwhile, within mailStoreTimeout, but within
// mailCutRecordTimeout once the pass has ended (a stop's deadline, which
// Run waits on): a database that stops answering as a stop ends must not
// hold the stop 10 s longer. (An erasure notice cut as it was sent is
// forgotten and then queued again: up to twice that.)
func recordContext(ctx context.Context) (context.Context, context.CancelFunc) {
	rec, cancel := context.WithTimeout(context.WithoutCancel(ctx), mailStoreTimeout)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(mailCutRecordTimeout, cancel)
		context.AfterFunc(rec, func() { t.Stop() })
	})
	return rec, func() { stop(); cancel() }
}

// requeueCut queues m again, due at once, after the pass's time ran out
// (a stop's deadline) as it was minting m's link, extending its lease or
// sending it (err): not the relay's failure, so no backoff and never dead
// for it; the next pass, here or elsewhere, sends it. Recorded whatever
// ctx says, within mailCutRecordTimeout: a stop waits for it, and a mail
// not recorded is sent after its lease.
func (s *Service) requeueCut(ctx context.Context, m *OutboxMail, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mailCutRecordTimeout)
	defer cancel()
	if held, err := s.settleMail(ctx, m, s.store.RetryMail(ctx, m.ID, m.Claim, s.now(), errorText(err)), false); !held || err != nil {
		return err
	}
	s.logger.Warn("mail delivery cut short by the sender's stop; it goes at the next pass", "mail_id", m.ID,
		"kind", m.Kind, "err", err)
	return nil
}

// settleMail reports the store's error of recording a mail's outcome. The
// store refuses (ENotFound) when the claim no longer holds the mail: its
// lease ran out and another sender has it, or it is gone (withdrawn by a
// newer link, a password change or an erasure). That sender decides its
// fate, so it is no error of this pass; but a mail sent under a lapsed
// lease may go out twice, which an operator should hear of. A mail the
// outbox no longer holds, well within the lease this sender set (no clock
// within mailLeaseSlack of its own can have seen the lease run out), was
// withdrawn. held reports whether the claim still held the mail, and so
// whether the outcome is this pass's to tell (logs, metrics).
func (s *Service) settleMail(ctx context.Context, m *OutboxMail, err error, sent bool) (held bool, _ error) {
	if ErrorCode(err) != ENotFound {
		return err == nil, err
	}
	withdrawn := false
	if s.now().Before(m.ClaimedUntil.Add(-mailLeaseSlack)) {
		queued, err := s.store.MailQueued(ctx, m.ID)
		withdrawn = err == nil && !queued // unknown: told as a lapse
	}
	switch {
	case withdrawn:
		s.logger.Info("mail withdrawn while it was being sent (a newer link, a password change, an erasure)",
			"mail_id", m.ID, "kind", m.Kind, "sent", sent)
	case sent:
		s.logger.Error("mail sent after its claim had lapsed; another sender may send it again", "mail_id", m.ID,
			"kind", m.Kind)
	default:
		s.logger.Warn("mail claim lapsed before its outcome was recorded; left to the sender that holds it",
			"mail_id", m.ID, "kind", m.Kind)
	}
	return false, nil
}

// errClaimLapsed reports that a sender's claim no longer holds its mail.
var errClaimLapsed = errors.New("the claim on the mail lapsed")

// claimLapsed logs a mail left unsent because its claim lapsed: another
// sender has it now (or has sent it), and a second send would mint a link
// that voids the one that sender mails; or the mail was withdrawn while it
// was being sent (an erasure, a password change deleting a reset mail).
func (s *Service) claimLapsed(m *OutboxMail) {
	s.logger.Warn("mail claim lapsed before sending; left to the sender that holds it, if it was not withdrawn"+
		" (an erasure, a password change)", "mail_id", m.ID, "kind", m.Kind)
}

// mintLink creates the one-time token of a verification, reset or address
// change mail, voiding the user's older ones of its type, and returns its
// link; "" when the mail is no longer wanted (account gone or deleted,
// address already verified or changed, or a reset or change for an
// account an administrator locked), errClaimLapsed when the claim no
// longer holds the mail. holder, for an address change, is the account the
// new address has: its row tells of the request (the requester's does not).
func (s *Service) mintLink(ctx context.Context, m *OutboxMail, holder *User) (string, error) {
	var link string
	err := s.inTx(ctx, func(tx *txn) error {
		var u *User
		if m.UserID != uuid.Nil {
			// The user before the mail, as every flow locks them
			// (Store.InTx): an erasure holds the user and deletes the mail.
			var err error
			if u, err = tx.User(ctx, m.UserID); err != nil && ErrorCode(err) != ENotFound {
				return err
			}
		}
		now := s.now()
		// Before the link is minted, so that no other sender can claim the
		// mail meanwhile.
		if err := tx.ExtendMailClaim(ctx, m.ID, m.Claim, now.Add(mailLease)); ErrorCode(err) == ENotFound {
			return errClaimLapsed
		} else if err != nil {
			return err
		}
		if u == nil {
			return nil
		}
		// A verification or reset mail goes to the account's address, an
		// address change's to the new one. A reset or change of an
		// account an administrator locked: LockUser withdraws them and
		// forgot-password queues none meanwhile; kept as a safeguard.
		change := m.Kind == MailEmailChange
		if u.IsDeleted() || (u.Email != m.To) != change || (m.Kind == MailVerifyEmail && u.EmailVerified) ||
			(m.Kind != MailVerifyEmail && u.LockedByAdmin(now)) {
			return nil
		}
		typ, ttl, page, newEmail := VerifyEmail, EmailVerificationTTL, "verify-email", ""
		switch m.Kind {
		case MailPasswordReset:
			typ, ttl, page = PasswordReset, PasswordResetTTL, "reset-password"
		case MailEmailChange:
			newEmail = m.To
		}
		raw, err := s.newVerificationToken(ctx, tx, u.ID, typ, newEmail, now.Add(ttl), now)
		if err != nil {
			return err
		}
		if holder != nil && m.Attempts == 1 {
			// Logged for the account the address has, as a registration
			// at it is (once, not at every retry); the requester's row
			// says nothing of it.
			if err := tx.CreateSecurityLog(ctx, s.audit(now, Client{}, EventEmailChangeRequested, ResultFailure,
				holder.ID, "another account asked to move to this address", nil)); err != nil {
				return err
			}
		}
		link = s.link(page, raw)
		return nil
	})
	return link, err
}

// addressHolder returns the account that has address, nil when none has;
// read outside any transaction, locking nothing (the sender holds the
// requester, and must not wait for another account's row).
func (s *Service) addressHolder(ctx context.Context, address string) (*User, error) {
	u, err := s.store.UserByEmail(ctx, address)
	if ErrorCode(err) == ENotFound {
		return nil, nil
	}
	return u, err
}

func (s *Service) observeMail(m *OutboxMail, ev MailEvent) {
	if s.hooks.Mail != nil {
		s.hooks.Mail(m.Kind, ev)
	}
}

// errorText keeps a failure's text short enough for its column.
func errorText(err error) string { return truncate(fmt.Sprint(err), 500) }

// OutboxStats counts the outbox, for metrics and operators.
func (s *Service) OutboxStats(ctx context.Context) (OutboxStats, error) {
	return s.store.OutboxStats(ctx)
}

// Mails lists the outbox for operators: pending or dead mails, newest
// first, one page, logged as list_mail (the recipients are personal data).
func (s *Service) Mails(ctx context.Context, c Client, f MailFilter) (Page[*OutboxMail], error) {
	limit, err := ListLimit(f.Limit)
	if err != nil {
		return Page[*OutboxMail]{}, err
	}
	f.Limit = limit + 1
	rows, err := s.store.Mails(ctx, f)
	if err != nil {
		return Page[*OutboxMail]{}, err
	}
	state := "pending"
	if f.Dead {
		state = "dead"
	}
	return listed(ctx, s, c, uuid.Nil, "list_mail", map[string]any{"state": state},
		page(rows, limit, func(m *OutboxMail) Cursor { return Cursor{Time: m.CreatedAt, ID: m.ID} }))
}

var errNoDeadMail = Errorf(ENotFound, "No such dead mail.")

// RetryMail gives a dead mail a new round of attempts, logged as
// admin_action in the same transaction. ENotFound when there is no such
// dead mail.
func (s *Service) RetryMail(ctx context.Context, c Client, id uuid.UUID) error {
	return s.inTx(ctx, func(tx *txn) error {
		now := s.now()
		err := tx.ReviveMail(ctx, id, now)
		if ErrorCode(err) == ENotFound {
			return errNoDeadMail // the store's message, in the API's words
		}
		if err != nil {
			return err
		}
		tx.mailed = true
		return s.logAdmin(ctx, tx, now, c, uuid.Nil, map[string]any{"action": "retry_mail", "mail_id": id.String()})
	})
}
