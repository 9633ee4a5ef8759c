package authd

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// purgeBatch is how many rows one statement deletes, so that retention
// never holds a long lock on a large table.
const purgeBatch = 1000

// expiredGrace is how long expired tokens, verification tokens and
// sessions are kept (SPEC §6.9: a day), for investigations.
const expiredGrace = 24 * time.Hour

// Purge applies retention (SPEC §6.9) now: security logs, and outbox mail
// dead (undeliverable) for longer than retention, and tokens, verification tokens and sessions that ended more
// than a day ago; and the copies the MailArchive kept longer than retention
// (SPEC §7). With dryRun it only counts and deletes nothing.
func (s *Service) Purge(ctx context.Context, retention time.Duration, dryRun bool) (PurgeResult, error) {
	now := s.now()
	res, err := s.store.Purge(ctx, PurgeRequest{LogsBefore: now.Add(-retention), ExpiredBefore: now.Add(-expiredGrace),
		Now: now, Batch: purgeBatch, DryRun: dryRun})
	if dryRun {
		return res, err
	}
	// Even when another instance purges the database, and when the
	// database's purge failed (a stuck erasure, say): the copies are this
	// instance's own, and their retention does not wait for the rows'.
	if s.archive != nil {
		if perr := s.archive.Prune(ctx, now.Add(-retention)); perr != nil {
			err = errors.Join(err, fmt.Errorf("pruning the mailer's copies: %w", perr))
		}
	}
	return res, err
}

// RunRetention purges every interval until ctx ends. A purge that fails
// is logged with what it did: one that keeps failing (an erasure it
// cannot finish) still deletes the rest, and its log says so.
func (s *Service) RunRetention(ctx context.Context, retention, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		res, err := s.Purge(ctx, retention, false)
		switch {
		case err != nil && ctx.Err() == nil:
			s.logger.Error("retention purge failed", append(purgeAttrs(res), "err", err)...)
		case res.Skipped:
			s.logger.Debug("retention purge skipped: another instance is purging")
		case err == nil:
			s.logger.Info("retention purge", purgeAttrs(res)...)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// purgeAttrs is what a purge deleted, and the tables it left rows in, as
// a log line's attributes.
func purgeAttrs(res PurgeResult) []any {
	return []any{"security_logs", res.SecurityLogs, "jwt_tokens", res.Tokens,
		"verification_tokens", res.VerificationTokens, "mfa_challenges", res.MFAChallenges,
		"webauthn_challenges", res.WebAuthnChallenges, "oauth_auth_requests", res.AuthRequests,
		"oauth_codes", res.AuthCodes, "sessions", res.Sessions, "revocation_events", res.RevocationEvents,
		"dead_mails", res.DeadMails, "erased_accounts", res.ErasedAccounts, "deferred", res.Deferred}
}
