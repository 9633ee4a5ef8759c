package authd

import "time"

// SetMailPace sets what s believes a mail request that mails takes, for
// tests of the padding.
func SetMailPace(s *Service, typical, spread time.Duration) { s.mailPace.Set(typical, spread) }

// MailDeadline is when s answers a mail request now (mailRequest).
func MailDeadline(s *Service) time.Duration { return min(s.mailPace.Deadline(), maxMailPadding) }
