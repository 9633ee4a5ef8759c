package authd

import "time"

// SetMailPace sets what s believes a mail request that mails takes, for
// tests of the padding.
func SetMailPace(s *Service, typical, spread time.Duration) { s.mailPace.Set(typical, spread) }

// MailDeadline is when s answers a mail request now (mailRequest).
func MailDeadline(s *Service) time.Duration { return min(s.mailPace.Deadline(), maxPadding) }

// SetFailPace sets what s believes recording an account's wrong password
// takes, for tests of the padding.
func SetFailPace(s *Service, typical, spread time.Duration) { s.failPace.Set(typical, spread) }

// FailPace is what s believes recording an account's wrong password takes.
func FailPace(s *Service) time.Duration { return s.failPace.Typical() }
