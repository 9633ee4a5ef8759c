package authd

import (
	"time"

	"github.com/google/uuid"
)

// Session is one login and every token pair rotated from it (table sessions).
// It ends when revoked or at ExpiresAt, the absolute limit from the login that
// rotation never extends.
type Session struct {
	ID         uuid.UUID
	UserID     uuid.UUID
	DeviceInfo string
	CreatedAt  time.Time
	LastUsedAt time.Time
	ExpiresAt  time.Time
	RevokedAt  time.Time // zero: not revoked
	// AMR says how the login was authenticated (RFC 8176), for the amr
	// claim of every access token of the session.
	AMR []string
	// ClientID is the OpenID Connect client whose authorization code
	// started the session; its refresh tokens work for that client only.
	// Empty: a JSON login or a browser sign-in.
	ClientID string
	// Scopes are what the client was granted (OpenID Connect sessions only).
	Scopes []string
	// BrowserDigest is the digest of the hosted pages' cookie of a browser
	// sign-in; empty for any other session.
	BrowserDigest string
	// SignedInWith is the factor that proved the sign-in beside the
	// password, or in its place: removing that factor ends the session.
	SignedInWith SignInFactor
}

// SignInFactor names the factor that proved a sign-in beside the password
// (a TOTP code, a recovery code, a passkey as the second factor), or in its
// place (a passkey alone). The zero SignInFactor is the password alone;
// sessions begun before authd recorded it (migration 25) have it too.
type SignInFactor struct {
	Method    string    // MethodTOTP, MethodRecoveryCode or MethodPasskey
	PasskeyID uuid.UUID // which passkey, with MethodPasskey; else uuid.Nil
}

// Active reports whether the session can still be used at now.
func (s *Session) Active(now time.Time) bool {
	return s.RevokedAt.IsZero() && now.Before(s.ExpiresAt)
}

// Token is an issued access or refresh token (table jwt_tokens). Raw refresh
// tokens are never stored: TokenValue holds the refresh token's digest and is
// empty (NULL) for access tokens.
type Token struct {
	ID         uuid.UUID
	JTI        string
	UserID     uuid.UUID
	SessionID  uuid.UUID
	ParentID   uuid.UUID // the refresh token this one was rotated from; Nil for a login
	TokenType  TokenType
	TokenValue string
	IssuedAt   time.Time
	ExpiresAt  time.Time
	Revoked    bool
	RevokedAt  time.Time
	RotatedAt  time.Time // when this refresh token was exchanged for a new pair
	DeviceInfo string
	CreatedAt  time.Time
}

// Expired reports whether the token is past its expiry at now.
func (t *Token) Expired(now time.Time) bool { return !now.Before(t.ExpiresAt) }

// VerificationToken is a one-time email verification or password reset token
// (table verification_tokens). Token holds the digest, never the raw value.
type VerificationToken struct {
	ID        uuid.UUID
	Token     string
	UserID    uuid.UUID
	TokenType VerificationType
	// NewEmail, on an email_verification token, is the address following
	// it moves the account to; "" on one that verifies the account's own.
	NewEmail  string
	CreatedAt time.Time
	ExpiresAt time.Time
	Used      bool
	UsedAt    time.Time
	// Attempts counts the password checks made with a link that moves
	// the account (linkPasswordAttempts bound them); 0 on the others.
	// AttemptedAt is when the last of them was reserved (zero: none).
	Attempts    int
	AttemptedAt time.Time
}

// Usable reports whether the token can still be redeemed at now.
func (v *VerificationToken) Usable(now time.Time) bool {
	return !v.Used && now.Before(v.ExpiresAt)
}

// The lifetimes of verification tokens (SPEC §6.2, seed).
const (
	EmailVerificationTTL = 24 * time.Hour
	PasswordResetTTL     = time.Hour
)
