package authd

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Column limits of security_logs, applied by NewSecurityLog so that a hostile
// header can never make an audit write fail.
const (
	MaxIPLength            = 45 // an IPv6 address in text form
	MaxUserAgentLength     = 512
	MaxFailureReasonLength = 255
)

// SecurityLog is one audit event (table security_logs). UserID is uuid.Nil
// when the user is unknown (for example a login for an unknown email).
type SecurityLog struct {
	ID                uuid.UUID
	EventType         EventType
	UserID            uuid.UUID
	Timestamp         time.Time
	IPAddress         string
	UserAgent         string
	Result            Result
	FailureReason     string
	AdditionalContext map[string]any
}

// NewSecurityLog builds an audit entry at time at, the counterpart of the
// seed's SecurityLog.create_log. Over-long text is cut at a UTF-8 boundary to
// fit its column.
func NewSecurityLog(at time.Time, event EventType, result Result, userID uuid.UUID,
	ip, userAgent, reason string, context map[string]any) *SecurityLog {
	return &SecurityLog{
		ID:                NewID(),
		EventType:         event,
		UserID:            userID,
		Timestamp:         at,
		IPAddress:         truncate(ip, MaxIPLength),
		UserAgent:         truncate(userAgent, MaxUserAgentLength),
		Result:            result,
		FailureReason:     truncate(reason, MaxFailureReasonLength),
		AdditionalContext: context,
	}
}

// NewID returns a new time-ordered (version 7) UUID, which keeps primary-key
// indexes compact.
func NewID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence, and
// drops invalid UTF-8 and NUL bytes, so that every database accepts it.
func truncate(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
