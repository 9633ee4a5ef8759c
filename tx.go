package authd

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
)

// txn is a flow's transaction: its queries, and what to do once it has
// committed — apply revocations here, wake the mail sender, count events,
// fail the request.
type txn struct {
	Queries
	keep        time.Duration // how long a revocation matters (revocationLifetime)
	revocations []Revocation
	events      []*SecurityLog
	mailed      bool
}

// revoke publishes rev to every instance with the transaction; this instance
// applies it once the transaction has committed.
func (t *txn) revoke(ctx context.Context, rev Revocation) error {
	rev.Until = rev.At.Add(t.keep)
	if err := t.PublishRevocation(ctx, rev); err != nil {
		return err
	}
	t.revocations = append(t.revocations, rev)
	return nil
}

// CreateSecurityLog writes l and remembers it for the metrics.
func (t *txn) CreateSecurityLog(ctx context.Context, l *SecurityLog) error {
	if err := t.Queries.CreateSecurityLog(ctx, l); err != nil {
		return err
	}
	t.events = append(t.events, l)
	return nil
}

// refuse writes l, the audit row of a refused request, and returns an
// error that fails the flow with err once the transaction has committed: the
// row (and whatever else the transaction wrote, such as a failure count) is
// kept, and the caller still gets err. Flows return it as any error:
//
//	return tx.refuse(ctx, l, errInvalidCredentials)
//
// Any other error rolls the transaction back.
func (t *txn) refuse(ctx context.Context, l *SecurityLog, err error) error {
	if e := t.CreateSecurityLog(ctx, l); e != nil {
		return e
	}
	return &refusal{err: err}
}

// refusal is the error of a refused request whose transaction commits.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// inTx runs fn in one transaction and, after it commits, applies its
// revocations, wakes the mail sender and reports its events. When fn
// returns an error of refuse, the transaction commits and inTx returns the
// error refuse was given.
func (s *Service) inTx(ctx context.Context, fn func(tx *txn) error) error {
	t := &txn{}
	var failure error
	err := s.store.InTx(ctx, func(q Queries) error {
		*t, failure = txn{Queries: q, keep: revocationLifetime(s.cfg.AccessTokenTTL)}, nil
		err := fn(t)
		if r, ok := errors.AsType[*refusal](err); ok {
			failure = r.err
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, rev := range t.revocations {
		s.revocations.Apply(rev)
	}
	if t.mailed {
		s.wakeSender()
	}
	for _, l := range t.events {
		s.observeEvent(l)
	}
	return failure
}

// logEvent writes a security-log row outside a flow's transaction (for
// failures that change nothing else).
func (s *Service) logEvent(ctx context.Context, l *SecurityLog) error {
	if err := s.store.CreateSecurityLog(ctx, l); err != nil {
		return err
	}
	s.observeEvent(l)
	return nil
}

func (s *Service) observeEvent(l *SecurityLog) {
	if s.hooks.Event != nil {
		s.hooks.Event(l.EventType, l.Result)
	}
}

// badTokensPerIP bounds the refused token redemptions (verify, reset,
// refresh) a client may make a minute: each is logged, so junk must not be
// able to flood the security log.
const badTokensPerIP = 30

// refuseToken fails a verification, reset or refresh whose token cannot be
// redeemed with EInvalidToken, logging it as a failure of event for user
// (Nil when the token matches nothing, SPEC 6.10); in tx when there is one.
// Past badTokensPerIP a minute from one client it is ERateLimited, unlogged.
func (s *Service) refuseToken(ctx context.Context, tx *txn, c Client, event EventType, user uuid.UUID,
	reason string, context map[string]any) error {
	return s.refuseTokenAs(ctx, tx, c, event, user, reason, context, errInvalidToken)
}

// refuseTokenAs is refuseToken answering with refused, an EInvalidToken
// error that may say why (ErrChallengeUsed).
func (s *Service) refuseTokenAs(ctx context.Context, tx *txn, c Client, event EventType, user uuid.UUID,
	reason string, context map[string]any, refused *Error) error {
	if err := s.limit(ctx, "bad-token:"+clientKey(c), badTokensPerIP, time.Minute); err != nil {
		return err
	}
	l := s.audit(s.now(), c, event, ResultFailure, user, reason, context)
	if tx != nil {
		return tx.refuse(ctx, l, refused)
	}
	if err := s.logEvent(ctx, l); err != nil {
		return err
	}
	return refused
}
