package authd

import "time"

// SetMailPace sets what s believes a mail request that mails takes, for
// tests of the padding.
func SetMailPace(s *Service, typical, spread time.Duration) { s.mailPace.Set(typical, spread) }

// MailDeadline is when s answers a mail request now (mailRequest).
func MailDeadline(s *Service) time.Duration { return min(s.mailPace.Deadline(), maxPadding) }

// SetFailPace sets what s believes a refused login takes, for accounts
// and unknown addresses alike, for tests of the padding.
func SetFailPace(s *Service, typical, spread time.Duration) {
	s.accountFails.Set(typical, spread)
	s.unknownFails.Set(typical, spread)
}

// FailDeadline is when s answers a refused login now.
func FailDeadline(s *Service) time.Duration { return min(s.failDeadline(), maxPadding) }

// FailPaces are what s believes a refused login takes for an account and
// for an unknown address.
func FailPaces(s *Service) (account, unknown time.Duration) {
	return s.accountFails.Typical(), s.unknownFails.Typical()
}

// StaleRetryPause is how long stale requests answer at once after a failed
// catch-up.
const StaleRetryPause = staleRetryPause

// SetListTimeout sets how long a listing's read may take, until the test
// ends.
func SetListTimeout(t interface{ Cleanup(func()) }, d time.Duration) {
	was := listTimeout
	listTimeout = d
	t.Cleanup(func() { listTimeout = was })
}

// AdminListingsAtOnce is how many administrators' listings read at once.
const AdminListingsAtOnce = adminListingsAtOnce

// Woken reports whether s's outbox sender has been told that mail is
// waiting since it last looked, taking the word as the sender does.
func Woken(s *Service) bool {
	select {
	case <-s.wake:
		return true
	default:
		return false
	}
}

// AgeRevocations makes what s's revocation set recorded (its last load or
// catch-up, its last failed one) d older, as if d had passed on the
// monotonic clock it reads, for tests of RevocationMaxLag that must not
// sleep. Call it with no catch-up running.
func AgeRevocations(s *Service, d time.Duration) { s.rev.epoch = s.rev.epoch.Add(-d) }
