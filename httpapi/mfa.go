package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"time"

	"github.com/authd/authd"
	"github.com/pquerna/otp"
)

type codeIn struct {
	Code string `json:"code"`
}

// readCode reads the {code} body of the second-factor routes.
func readCode(w http.ResponseWriter, r *http.Request) (string, error) {
	var in codeIn
	if err := decodeJSON(w, r, &in); err != nil {
		return "", err
	}
	return in.Code, required("code", in.Code)
}

type factorOut struct {
	Kind       string     `json:"kind"`
	Name       string     `json:"name,omitempty"` // of a passkey
	Enabled    bool       `json:"enabled"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func (s *Server) mfa(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	st, err := s.svc.MFA(r.Context(), a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, MFAView(st))
	return nil
}

// MFAView is a user's second factors as the API (and `authd admin users
// mfa --json`) shows them: kinds (totp, passkey), names of passkeys and
// dates, never secrets.
func MFAView(st *authd.MFAStatus) any {
	items := make([]factorOut, 0, len(st.Factors))
	for _, f := range st.Factors {
		items = append(items, factorOut{Kind: string(f.Kind), Enabled: f.Confirmed, CreatedAt: f.CreatedAt,
			LastUsedAt: optTime(f.LastUsedAt)})
	}
	for _, p := range st.Passkeys {
		items = append(items, factorOut{Kind: authd.MethodPasskey, Name: p.Name, Enabled: true, CreatedAt: p.CreatedAt,
			LastUsedAt: optTime(p.LastUsedAt)})
	}
	return map[string]any{"items": items, "recovery_codes_left": st.RecoveryCodesLeft}
}

// qrSize is the side of the enrolment QR image in pixels: large enough for
// phone cameras, small enough to inline.
const qrSize = 256

func (s *Server) enrollTOTP(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	password, proof, err := readReauth(w, r)
	if err != nil {
		return err
	}
	e, err := s.svc.EnrollTOTP(r.Context(), client(r), a, password, proof)
	if err != nil {
		return err
	}
	key, err := otp.NewKeyFromURL(e.URI)
	if err != nil {
		return err
	}
	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	// The secret must never sit in a cache.
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"secret": e.Secret, "otpauth_uri": e.URI,
		"qr_png": base64.StdEncoding.EncodeToString(buf.Bytes())})
	return nil
}

func (s *Server) confirmTOTP(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	code, err := readCode(w, r)
	if err != nil {
		return err
	}
	codes, err := s.svc.ConfirmTOTP(r.Context(), client(r), a, code)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
	return nil
}

func (s *Server) disableTOTP(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	var in reauthIn
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := s.svc.DisableTOTP(r.Context(), client(r), a, in.Password, in.proof()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) replaceRecoveryCodes(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	var in reauthIn
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	codes, err := s.svc.ReplaceRecoveryCodes(r.Context(), client(r), a, in.Password, in.proof())
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
	return nil
}

func (s *Server) verifyMFA(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		MFAToken   string          `json:"mfa_token"`
		Method     string          `json:"method"`
		Code       string          `json:"code"`
		Credential json.RawMessage `json:"credential"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	var pair *authd.TokenPair
	var err error
	if in.Method == authd.MethodPasskey {
		if len(in.Credential) == 0 {
			return required("mfa_token", in.MFAToken, "credential", "")
		}
		if err := required("mfa_token", in.MFAToken); err != nil {
			return err
		}
		pair, err = s.svc.VerifyMFAPasskey(r.Context(), client(r), in.MFAToken, in.Credential)
	} else {
		if err := required("mfa_token", in.MFAToken, "method", in.Method, "code", in.Code); err != nil {
			return err
		}
		pair, err = s.svc.VerifyMFA(r.Context(), client(r), in.MFAToken, in.Method, in.Code)
	}
	if authd.ErrorCode(err) == authd.EInvalidToken {
		// A dead mfa_token is a wrong request body, not a missing bearer.
		return badRequest{err}
	}
	if err != nil {
		return err
	}
	writePair(w, pair)
	return nil
}
