package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// The GDPR export: every personal datum held on the user, one section per
// table, each object keyed by column name. ExcludedColumns lists, with the
// reason, every column left out.

// ExcludedColumns are the columns the export leaves out, and why.
var ExcludedColumns = map[string]string{
	"users.password_hash":              "a one-way hash of your password: it is a security secret, not information about you",
	"jwt_tokens.token_value":           "a digest of a refresh token: a security secret",
	"verification_tokens.token":        "a digest of a one-time link: a security secret",
	"mail_outbox.claim":                "which mail sender is delivering the mail right now: an internal lock, not information about you",
	"mfa_factors.secret":               "your authenticator's secret, encrypted: a security secret (re-enrol to see a new one)",
	"mfa_recovery_codes.code_digest":   "a digest of a recovery code: a security secret",
	"mfa_challenges.token":             "a digest of a sign-in's mfa_token: a security secret",
	"passkeys.credential_id":           "your passkey's identifier, which only your device uses: not information about you",
	"passkeys.public_key":              "your passkey's public key, which only checks its signatures: not information about you",
	"webauthn_challenges.challenge":    "a digest of a passkey ceremony's random challenge: a security secret",
	"webauthn_challenges.session_data": "the passkey ceremony's working state (its challenge and your passkeys' identifiers): a security secret",
	"oauth_codes.code_digest":          "a digest of an authorization code: a security secret",
	"sessions.browser_digest":          "a digest of the sign-in pages' cookie: a security secret",
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
	LastFailedLogin       *time.Time `json:"last_failed_login_timestamp"`
	FailedCodeAttempts    int        `json:"failed_code_attempts"`
	CodesLockedUntil      *time.Time `json:"codes_locked_until"`
}

type exportSession struct {
	ID         uuid.UUID  `json:"id"`
	UserID     uuid.UUID  `json:"user_id"`
	DeviceInfo string     `json:"device_info"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt time.Time  `json:"last_used_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	AMR        string     `json:"amr"`
	ClientID   *string    `json:"client_id"`
	Scopes     *string    `json:"scopes"`
	// The factor that signed the session in, beside the password or alone.
	SigninFactor    *string    `json:"signin_factor"`
	SigninPasskeyID *uuid.UUID `json:"signin_passkey_id"`
}

type exportFactor struct {
	ID          uuid.UUID  `json:"id"`
	UserID      uuid.UUID  `json:"user_id"`
	Kind        string     `json:"kind"`
	Confirmed   bool       `json:"confirmed"`
	CreatedAt   time.Time  `json:"created_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
	LastUsedAt  *time.Time `json:"last_used_at"`
	LastStep    int64      `json:"last_step"`
}

type exportRecoveryCode struct {
	ID        uuid.UUID  `json:"id"`
	UserID    uuid.UUID  `json:"user_id"`
	CreatedAt time.Time  `json:"created_at"`
	UsedAt    *time.Time `json:"used_at"`
}

type exportChallenge struct {
	ID         uuid.UUID  `json:"id"`
	UserID     uuid.UUID  `json:"user_id"`
	DeviceInfo string     `json:"device_info"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  time.Time  `json:"expires_at"`
	Failures   int        `json:"failures"`
	UsedAt     *time.Time `json:"used_at"`
}

type exportPasskey struct {
	ID              uuid.UUID  `json:"id"`
	UserID          uuid.UUID  `json:"user_id"`
	Name            string     `json:"name"`
	AttestationType string     `json:"attestation_type"`
	AAGUID          uuid.UUID  `json:"aaguid"`
	SignCount       uint32     `json:"sign_count"`
	BackupEligible  bool       `json:"backup_eligible"`
	BackupState     bool       `json:"backup_state"`
	Transports      string     `json:"transports"`
	CreatedAt       time.Time  `json:"created_at"`
	LastUsedAt      *time.Time `json:"last_used_at"`
}

type exportWebAuthnChallenge struct {
	ID             uuid.UUID  `json:"id"`
	UserID         *uuid.UUID `json:"user_id"`
	Purpose        string     `json:"purpose"`
	MFAChallengeID *uuid.UUID `json:"mfa_challenge_id"`
	CreatedAt      time.Time  `json:"created_at"`
	ExpiresAt      time.Time  `json:"expires_at"`
	UsedAt         *time.Time `json:"used_at"`
}

type exportConsent struct {
	ID        uuid.UUID `json:"id"`
	UserID    uuid.UUID `json:"user_id"`
	ClientID  string    `json:"client_id"`
	Scopes    string    `json:"scopes"`
	GrantedAt time.Time `json:"granted_at"`
}

type exportAuthCode struct {
	ID                  uuid.UUID  `json:"id"`
	ClientID            string     `json:"client_id"`
	UserID              uuid.UUID  `json:"user_id"`
	SessionID           uuid.UUID  `json:"session_id"`
	RedirectURI         string     `json:"redirect_uri"`
	CodeChallenge       string     `json:"code_challenge"`
	CodeChallengeMethod string     `json:"code_challenge_method"`
	Nonce               string     `json:"nonce"`
	Scopes              string     `json:"scopes"`
	AuthTime            time.Time  `json:"auth_time"`
	AMR                 string     `json:"amr"`
	CreatedAt           time.Time  `json:"created_at"`
	ExpiresAt           time.Time  `json:"expires_at"`
	UsedAt              *time.Time `json:"used_at"`
	IssuedSessionID     *uuid.UUID `json:"issued_session_id"`
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
	NewEmail  *string    `json:"new_email"`
	// Attempts: the password checks made with a link that moves the
	// account (whoever holds the new mailbox made them), the last at
	// AttemptedAt.
	Attempts    int        `json:"attempts"`
	AttemptedAt *time.Time `json:"attempted_at"`
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

type exportRevocationEvent struct {
	ID        int64     `json:"id"`
	Kind      string    `json:"kind"`
	SubjectID uuid.UUID `json:"subject_id"`
	Reason    string    `json:"reason"`
	ExpiresAt time.Time `json:"expires_at"`
	CreatedAt time.Time `json:"created_at"`
}

// exportSections are the document's arrays, in the order Store.UserData
// reads them (authd.UserRows), then excluded_columns closes it.
var exportSections = []string{"users", "consent_history", "sessions", "jwt_tokens", "verification_tokens",
	"security_logs", "mail_outbox", "mfa_factors", "mfa_recovery_codes", "mfa_challenges",
	"passkeys", "webauthn_challenges", "oauth_consents", "oauth_codes", "revocation_events"}

// exportWriter spools the export document to a temporary file while the
// store reads the rows, holding one row and a buffer in memory however many
// rows the user has. Only once the store's snapshot is closed is the file
// sent, so a client that reads slowly (or not at all) holds a file, never a
// database connection. A section opens when its first row, or a later
// section's, arrives; one without rows is an empty array.
type exportWriter struct {
	spool   *os.File
	buf     *bufio.Writer
	enc     *json.Encoder
	section int // the open section, -1 before the first
	rows    int // rows written in it
}

func newExportWriter(now time.Time) (*exportWriter, error) {
	f, err := os.CreateTemp("", "authd-export-*.json")
	if err != nil {
		return nil, fmt.Errorf("export spool: %w", err)
	}
	// Unlinked at once where the system allows: nothing is left behind,
	// whatever happens to the process. close removes it otherwise.
	os.Remove(f.Name())
	x := &exportWriter{spool: f, section: -1}
	x.buf = bufio.NewWriterSize(f, 32<<10)
	x.enc = json.NewEncoder(x.buf)
	x.buf.WriteString(`{"exported_at":`)
	x.enc.Encode(now)
	return x, nil
}

// close discards the spool.
func (x *exportWriter) close() {
	x.spool.Close()
	os.Remove(x.spool.Name())
}

// row adds v to the section (an index of exportSections).
func (x *exportWriter) row(section int, v any) error {
	if section < x.section {
		return fmt.Errorf("export: a %s row after the %s section", exportSections[section], exportSections[x.section])
	}
	for x.section < section {
		x.next()
	}
	if x.rows > 0 {
		x.buf.WriteByte(',')
	}
	x.rows++
	return x.enc.Encode(v)
}

// next closes the open section and opens the following one.
func (x *exportWriter) next() {
	if x.section >= 0 {
		x.buf.WriteString("]")
	}
	x.section++
	x.buf.WriteString(`,"` + exportSections[x.section] + `":[`)
	x.rows = 0
}

// finish writes the sections still to come, closes the document and
// returns its size, ready to be read from the start.
func (x *exportWriter) finish() (int64, error) {
	for x.section < len(exportSections)-1 {
		x.next()
	}
	x.buf.WriteString(`],"excluded_columns":`)
	x.enc.Encode(ExcludedColumns)
	x.buf.WriteString("}\n")
	if err := x.buf.Flush(); err != nil {
		return 0, fmt.Errorf("export spool: %w", err)
	}
	size, err := x.spool.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = x.spool.Seek(0, io.SeekStart)
	}
	return size, err
}

// userRows routes each row the store reads to its section, shaped as the
// export shows it.
func (x *exportWriter) userRows() authd.UserRows {
	return authd.UserRows{
		User: func(u *authd.User) error {
			return x.row(0, exportUser{ID: u.ID, Email: u.Email, EmailVerified: u.EmailVerified,
				AccountStatus: string(u.AccountStatus), FailedLoginAttempts: u.FailedLoginAttempts,
				AccountLockedUntil: optTime(u.AccountLockedUntil), RegistrationTimestamp: u.RegistrationTimestamp,
				LastLoginTimestamp: optTime(u.LastLoginTimestamp), LastPasswordChange: u.LastPasswordChange,
				ConsentTimestamp: u.ConsentTimestamp, ConsentStatus: u.ConsentStatus, CreatedAt: u.CreatedAt,
				UpdatedAt: u.UpdatedAt, LockReason: optString(string(u.LockReason)),
				LastFailedLogin: optTime(u.LastFailedLogin), FailedCodeAttempts: u.FailedCodeAttempts,
				CodesLockedUntil: optTime(u.CodesLockedUntil)})
		},
		ConsentLogs: func(l *authd.SecurityLog) error {
			var consent any = true // registration requires it
			if l.EventType == authd.EventConsentUpdated {
				consent = l.AdditionalContext["consent"]
			}
			return x.row(1, consentChange{Consent: consent, Timestamp: l.Timestamp, Event: string(l.EventType)})
		},
		Sessions: func(s *authd.Session) error {
			return x.row(2, exportSession{ID: s.ID, UserID: s.UserID, DeviceInfo: s.DeviceInfo, CreatedAt: s.CreatedAt,
				LastUsedAt: s.LastUsedAt, ExpiresAt: s.ExpiresAt, RevokedAt: optTime(s.RevokedAt),
				AMR: authd.FormatAMR(s.AMR), ClientID: optString(s.ClientID),
				Scopes: optString(authd.FormatScopes(s.Scopes)), SigninFactor: optString(s.SignedInWith.Method),
				SigninPasskeyID: optID(s.SignedInWith.PasskeyID)})
		},
		Tokens: func(t *authd.Token) error {
			return x.row(3, exportToken{ID: t.ID, JTI: t.JTI, UserID: t.UserID, SessionID: t.SessionID,
				ParentID: optID(t.ParentID), TokenType: string(t.TokenType), IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt,
				Revoked: t.Revoked, RevokedAt: optTime(t.RevokedAt), RotatedAt: optTime(t.RotatedAt),
				DeviceInfo: t.DeviceInfo, CreatedAt: t.CreatedAt})
		},
		VerificationTokens: func(v *authd.VerificationToken) error {
			return x.row(4, exportVerification{ID: v.ID, UserID: v.UserID, TokenType: string(v.TokenType),
				CreatedAt: v.CreatedAt, ExpiresAt: v.ExpiresAt, Used: v.Used, UsedAt: optTime(v.UsedAt),
				NewEmail: optString(v.NewEmail), Attempts: v.Attempts, AttemptedAt: optTime(v.AttemptedAt)})
		},
		SecurityLogs: func(l *authd.SecurityLog) error { return x.row(5, toSecurityLog(l)) },
		Mails: func(m *authd.OutboxMail) error {
			return x.row(6, exportMail{ID: m.ID, Kind: string(m.Kind), UserID: m.UserID, Recipient: m.To, Data: authd.MailData(m),
				CreatedAt: m.CreatedAt, NextAttemptAt: m.NextAttemptAt, Attempts: m.Attempts,
				ClaimedUntil: optTime(m.ClaimedUntil), LastError: m.LastError, DeadAt: optTime(m.DeadAt)})
		},
		Factors: func(f *authd.Factor) error {
			return x.row(7, exportFactor{ID: f.ID, UserID: f.UserID, Kind: string(f.Kind), Confirmed: f.Confirmed,
				CreatedAt: f.CreatedAt, ConfirmedAt: optTime(f.ConfirmedAt), LastUsedAt: optTime(f.LastUsedAt),
				LastStep: f.LastStep})
		},
		RecoveryCodes: func(c *authd.RecoveryCode) error {
			return x.row(8, exportRecoveryCode{ID: c.ID, UserID: c.UserID, CreatedAt: c.CreatedAt, UsedAt: optTime(c.UsedAt)})
		},
		MFAChallenges: func(c *authd.MFAChallenge) error {
			return x.row(9, exportChallenge{ID: c.ID, UserID: c.UserID, DeviceInfo: c.DeviceInfo, CreatedAt: c.CreatedAt,
				ExpiresAt: c.ExpiresAt, Failures: c.Failures, UsedAt: optTime(c.UsedAt)})
		},
		Passkeys: func(p *authd.Passkey) error {
			return x.row(10, exportPasskey{ID: p.ID, UserID: p.UserID, Name: p.Name, AttestationType: p.AttestationType,
				AAGUID: p.AAGUID, SignCount: p.SignCount, BackupEligible: p.BackupEligible, BackupState: p.BackupState,
				Transports: strings.Join(p.Transports, ","), CreatedAt: p.CreatedAt, LastUsedAt: optTime(p.LastUsedAt)})
		},
		WebAuthnChallenges: func(c *authd.WebAuthnChallenge) error {
			return x.row(11, exportWebAuthnChallenge{ID: c.ID, UserID: optID(c.UserID), Purpose: string(c.Purpose),
				MFAChallengeID: optID(c.MFAChallengeID), CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt,
				UsedAt: optTime(c.UsedAt)})
		},
		Consents: func(c *authd.Consent) error {
			return x.row(12, exportConsent{ID: c.ID, UserID: c.UserID, ClientID: c.ClientID,
				Scopes: authd.FormatScopes(c.Scopes), GrantedAt: c.GrantedAt})
		},
		AuthCodes: func(c *authd.AuthCode) error {
			return x.row(13, exportAuthCode{ID: c.ID, ClientID: c.ClientID, UserID: c.UserID, SessionID: c.SessionID,
				RedirectURI: c.RedirectURI, CodeChallenge: c.CodeChallenge, CodeChallengeMethod: c.CodeChallengeMethod,
				Nonce: c.Nonce, Scopes: authd.FormatScopes(c.Scopes), AuthTime: c.AuthTime, AMR: authd.FormatAMR(c.AMR),
				CreatedAt: c.CreatedAt, ExpiresAt: c.ExpiresAt, UsedAt: optTime(c.UsedAt),
				IssuedSessionID: optID(c.IssuedSessionID)})
		},
		RevocationEvents: func(e *authd.RevocationEvent) error {
			return x.row(14, exportRevocationEvent{ID: e.ID, Kind: string(e.Kind), SubjectID: e.Subject, Reason: e.Reason,
				ExpiresAt: e.ExpiresAt, CreatedAt: e.CreatedAt})
		},
	}
}

// export answers the GDPR export: the document is spooled from one snapshot
// of the store, then sent with its length. A failure before sending is a
// problem answer as usual; a failure while sending cuts the connection, and
// the Content-Length tells the client the file is incomplete.
func (s *Server) export(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	if r.Method == http.MethodHead {
		// The mux gives GET's handler HEAD too: it would make an export,
		// log it and spend one of the hour's, and send nothing.
		w.Header().Set("Allow", http.MethodGet)
		return &authd.Error{Code: authd.EMethodNotAllowed, Message: "An export is made by GET only."}
	}
	x, err := newExportWriter(time.Now().UTC())
	if err != nil {
		return err
	}
	defer x.close()
	if err := s.svc.Export(r.Context(), client(r), a, x.userRows()); err != nil {
		return err
	}
	size, err := x.finish()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="authd-export-%s.json"`, a.UserID))
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	// The server's write timeout (30 s from the request) would cut a
	// large export to a slow reader, and counts the time spent making
	// it: each piece gets its own, within a bound for the whole.
	sent := &paced{w: w, rc: http.NewResponseController(w), end: time.Now().Add(exportSendTimeout)}
	if _, err := io.CopyBuffer(sent, x.spool, make([]byte, exportPiece)); err != nil {
		if r.Context().Err() == nil {
			s.logger.WarnContext(r.Context(), "export cut short", "request_id", RequestID(r.Context()), "err", err)
		}
		panic(http.ErrAbortHandler)
	}
	return nil
}

// An export is sent in pieces of exportPiece bytes, each within
// exportPieceTimeout, the whole within exportSendTimeout (27 MB at about
// 30 KiB/s); a reader slower than that is cut (the Content-Length tells
// it), its connection not held longer.
const (
	exportPiece        = 64 << 10
	exportPieceTimeout = 30 * time.Second
	exportSendTimeout  = 15 * time.Minute
)

// paced writes to w, each write with a deadline of its own (the sooner of
// exportPieceTimeout from now and end).
type paced struct {
	w   io.Writer
	rc  *http.ResponseController
	end time.Time
}

func (p *paced) Write(b []byte) (int, error) {
	deadline := time.Now().Add(exportPieceTimeout)
	if deadline.After(p.end) {
		deadline = p.end
	}
	if err := p.rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, err
	}
	return p.w.Write(b)
}

func (s *Server) deleteMe(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	password, proof, err := readReauth(w, r)
	if err != nil {
		return err
	}
	if err := s.svc.DeleteMe(r.Context(), client(r), a, password, proof); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
