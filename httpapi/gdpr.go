package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// The GDPR export: every personal datum held on the user, one section per
// table, each object keyed by column name. ExcludedColumns lists, with the
// reason, every column left out.

// ExcludedColumns are the columns the export leaves out, and why.
var ExcludedColumns = map[string]string{
	"users.password_hash":       "a one-way hash of your password: it is a security secret, not information about you",
	"jwt_tokens.token_value":    "a digest of a refresh token: a security secret",
	"verification_tokens.token": "a digest of a one-time link: a security secret",
	"mail_outbox.claim":         "which mail sender is delivering the mail right now: an internal lock, not information about you",
}

type exportUser struct {
	ID                    uuid.UUID  `json:"id"`
	Email                 string     `json:"email"`
	EmailVerified         bool       `json:"email_verified"`
	AccountStatus         string     `json:"account_status"`
	FailedLoginAttempts   int        `json:"failed_login_attempts"`
	AccountLockedUntil    *time.Time `json:"account_locked_until"`
	RegistrationTimestamp time.Time  `json:"registration_timestamp"`
	LastLoginTimestamp    *time.Time `json:"last_login_timestamp"`
	LastPasswordChange    time.Time  `json:"last_password_change"`
	ConsentTimestamp      time.Time  `json:"consent_timestamp"`
	ConsentStatus         bool       `json:"consent_status"`
	CreatedAt             time.Time  `json:"created_at"`
	UpdatedAt             time.Time  `json:"updated_at"`
	LockReason            *string    `json:"lock_reason"`
}

type exportSession struct {
	ID         uuid.UUID  `json:"id"`
	UserID     uuid.UUID  `json:"user_id"`
	DeviceInfo string     `json:"device_info"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt time.Time  `json:"last_used_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

type exportToken struct {
	ID         uuid.UUID  `json:"id"`
	JTI        string     `json:"jti"`
	UserID     uuid.UUID  `json:"user_id"`
	SessionID  uuid.UUID  `json:"session_id"`
	ParentID   *uuid.UUID `json:"parent_id"`
	TokenType  string     `json:"token_type"`
	IssuedAt   time.Time  `json:"issued_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	Revoked    bool       `json:"revoked"`
	RevokedAt  *time.Time `json:"revoked_at"`
	RotatedAt  *time.Time `json:"rotated_at"`
	DeviceInfo string     `json:"device_info"`
	CreatedAt  time.Time  `json:"created_at"`
}

type exportVerification struct {
	ID        uuid.UUID  `json:"id"`
	UserID    uuid.UUID  `json:"user_id"`
	TokenType string     `json:"token_type"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	Used      bool       `json:"used"`
	UsedAt    *time.Time `json:"used_at"`
}

type exportMail struct {
	ID            uuid.UUID      `json:"id"`
	Kind          string         `json:"kind"`
	UserID        uuid.UUID      `json:"user_id"`
	Recipient     string         `json:"recipient"`
	Data          map[string]any `json:"data"`
	CreatedAt     time.Time      `json:"created_at"`
	NextAttemptAt time.Time      `json:"next_attempt_at"`
	Attempts      int            `json:"attempts"`
	ClaimedUntil  *time.Time     `json:"claimed_until"`
	LastError     string         `json:"last_error"`
	DeadAt        *time.Time     `json:"dead_at"`
}

type consentChange struct {
	Consent   any       `json:"consent"`
	Timestamp time.Time `json:"timestamp"`
	Event     string    `json:"event"`
}

type exportDoc struct {
	ExportedAt         time.Time            `json:"exported_at"`
	Users              []exportUser         `json:"users"`
	ConsentHistory     []consentChange      `json:"consent_history"`
	Sessions           []exportSession      `json:"sessions"`
	JWTTokens          []exportToken        `json:"jwt_tokens"`
	VerificationTokens []exportVerification `json:"verification_tokens"`
	SecurityLogs       []securityLogOut     `json:"security_logs"`
	MailOutbox         []exportMail         `json:"mail_outbox"`
	ExcludedColumns    map[string]string    `json:"excluded_columns"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

func exportOf(d *authd.UserData, now time.Time) exportDoc {
	u := d.User
	doc := exportDoc{ExportedAt: now, ExcludedColumns: ExcludedColumns,
		Users: []exportUser{{ID: u.ID, Email: u.Email, EmailVerified: u.EmailVerified, AccountStatus: string(u.AccountStatus),
			FailedLoginAttempts: u.FailedLoginAttempts, AccountLockedUntil: optTime(u.AccountLockedUntil),
			RegistrationTimestamp: u.RegistrationTimestamp, LastLoginTimestamp: optTime(u.LastLoginTimestamp),
			LastPasswordChange: u.LastPasswordChange, ConsentTimestamp: u.ConsentTimestamp, ConsentStatus: u.ConsentStatus,
			CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, LockReason: optString(string(u.LockReason))}},
		ConsentHistory: []consentChange{}, Sessions: []exportSession{}, JWTTokens: []exportToken{},
		VerificationTokens: []exportVerification{}, SecurityLogs: []securityLogOut{}, MailOutbox: []exportMail{},
	}
	for _, s := range d.Sessions {
		doc.Sessions = append(doc.Sessions, exportSession{ID: s.ID, UserID: s.UserID, DeviceInfo: s.DeviceInfo,
			CreatedAt: s.CreatedAt, LastUsedAt: s.LastUsedAt, ExpiresAt: s.ExpiresAt, RevokedAt: optTime(s.RevokedAt)})
	}
	for _, t := range d.Tokens {
		doc.JWTTokens = append(doc.JWTTokens, exportToken{ID: t.ID, JTI: t.JTI, UserID: t.UserID, SessionID: t.SessionID,
			ParentID: optID(t.ParentID), TokenType: string(t.TokenType), IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt,
			Revoked: t.Revoked, RevokedAt: optTime(t.RevokedAt), RotatedAt: optTime(t.RotatedAt), DeviceInfo: t.DeviceInfo,
			CreatedAt: t.CreatedAt})
	}
	for _, v := range d.VerificationTokens {
		doc.VerificationTokens = append(doc.VerificationTokens, exportVerification{ID: v.ID, UserID: v.UserID,
			TokenType: string(v.TokenType), CreatedAt: v.CreatedAt, ExpiresAt: v.ExpiresAt, Used: v.Used, UsedAt: optTime(v.UsedAt)})
	}
	for _, l := range d.SecurityLogs {
		doc.SecurityLogs = append(doc.SecurityLogs, toSecurityLog(l))
		switch {
		case l.EventType == authd.EventConsentUpdated:
			doc.ConsentHistory = append(doc.ConsentHistory, consentChange{Consent: l.AdditionalContext["consent"],
				Timestamp: l.Timestamp, Event: string(l.EventType)})
		case l.EventType == authd.EventRegistration && l.Result == authd.ResultSuccess:
			doc.ConsentHistory = append(doc.ConsentHistory, consentChange{Consent: true, Timestamp: l.Timestamp,
				Event: string(l.EventType)})
		}
	}
	for _, m := range d.Mails {
		var data map[string]any
		if !m.Until.IsZero() {
			data = map[string]any{"until": m.Until}
		}
		doc.MailOutbox = append(doc.MailOutbox, exportMail{ID: m.ID, Kind: string(m.Kind), UserID: m.UserID,
			Recipient: m.To, Data: data, CreatedAt: m.CreatedAt, NextAttemptAt: m.NextAttemptAt, Attempts: m.Attempts,
			ClaimedUntil: optTime(m.ClaimedUntil), LastError: m.LastError, DeadAt: optTime(m.DeadAt)})
	}
	return doc
}

func (s *Server) export(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	d, err := s.svc.Export(r.Context(), client(r), a)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="authd-export-%s.json"`, a.UserID))
	writeJSON(w, http.StatusOK, exportOf(d, time.Now().UTC()))
	return nil
}

func (s *Server) deleteMe(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	var in struct {
		Password string `json:"password"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("password", in.Password); err != nil {
		return err
	}
	if err := s.svc.DeleteMe(r.Context(), client(r), a, in.Password); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
