package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/authd/authd"
	"github.com/google/uuid"
)

// passkeyOut is a passkey as its user sees it: never the credential id or
// public key.
type passkeyOut struct {
	ID             uuid.UUID  `json:"id"`
	Name           string     `json:"name"`
	CreatedAt      time.Time  `json:"created_at"`
	LastUsedAt     *time.Time `json:"last_used_at"`
	BackupEligible bool       `json:"backup_eligible"`
}

func toPasskey(p *authd.Passkey) passkeyOut {
	out := passkeyOut{ID: p.ID, Name: p.Name, CreatedAt: p.CreatedAt, BackupEligible: p.BackupEligible}
	if !p.LastUsedAt.IsZero() {
		t := p.LastUsedAt
		out.LastUsedAt = &t
	}
	return out
}

// writeOptions answers a ceremony's options, which the library encodes as
// {publicKey: …} (binary members base64url).
func writeOptions(w http.ResponseWriter, options json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(options)
}

func (s *Server) beginPasskeyRegistration(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	password, proof, err := readReauth(w, r)
	if err != nil {
		return err
	}
	options, err := s.svc.BeginPasskeyRegistration(r.Context(), client(r), a, password, proof)
	if err != nil {
		return err
	}
	writeOptions(w, options)
	return nil
}

func (s *Server) finishPasskeyRegistration(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	var in struct {
		Name       string          `json:"name"`
		Credential json.RawMessage `json:"credential"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if len(in.Credential) == 0 {
		return required("credential", "")
	}
	added, err := s.svc.FinishPasskeyRegistration(r.Context(), client(r), a, in.Name, in.Credential)
	if err != nil {
		return err
	}
	out := struct {
		passkeyOut
		RecoveryCodes []string `json:"recovery_codes,omitempty"`
	}{toPasskey(added.Passkey), added.RecoveryCodes}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) passkeys(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	keys, err := s.svc.Passkeys(r.Context(), a)
	if err != nil {
		return err
	}
	items := make([]passkeyOut, len(keys))
	for i, p := range keys {
		items[i] = toPasskey(p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

// passkeyID reads the {id} of a passkey route; a malformed one names no
// passkey.
func passkeyID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, authd.Errorf(authd.ENotFound, "No such passkey.")
	}
	return id, nil
}

func (s *Server) renamePasskey(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	id, err := passkeyID(r)
	if err != nil {
		return err
	}
	var in struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if err := required("name", in.Name); err != nil {
		return err
	}
	p, err := s.svc.RenamePasskey(r.Context(), client(r), a, id, in.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toPasskey(p))
	return nil
}

// stepUpIn is the proof of a second factor that sensitive changes ask for.
type stepUpIn struct {
	Code    string          `json:"code"`
	Passkey json.RawMessage `json:"passkey"`
}

// proof is the step-up the request carries; a passkey member of null is
// none, as a client that always sends the member writes it.
func (in stepUpIn) proof() authd.StepUp {
	passkey := in.Passkey
	if string(passkey) == "null" {
		passkey = nil
	}
	return authd.StepUp{Code: in.Code, Passkey: passkey}
}

// reauthIn is the body of a change that re-authenticates: the password and
// the step-up. A factor's removal takes it too, the password required from
// a session signed in without it only (the service says so).
type reauthIn struct {
	Password string `json:"password"`
	stepUpIn
}

// readReauth reads the body of a change that re-authenticates: the
// password (required) and, for a user with a second factor, its proof.
func readReauth(w http.ResponseWriter, r *http.Request) (password string, proof authd.StepUp, err error) {
	var in reauthIn
	if err := decodeJSON(w, r, &in); err != nil {
		return "", authd.StepUp{}, err
	}
	if err := required("password", in.Password); err != nil {
		return "", authd.StepUp{}, err
	}
	return in.Password, in.proof(), nil
}

func (s *Server) deletePasskey(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	id, err := passkeyID(r)
	if err != nil {
		return err
	}
	var in reauthIn
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	if err := s.svc.DeletePasskey(r.Context(), client(r), a, id, in.Password, in.proof()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) beginStepUp(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	if err := decodeOptional(w, r, &struct{}{}); err != nil {
		return err
	}
	options, err := s.svc.BeginStepUp(r.Context(), a)
	if err != nil {
		return err
	}
	writeOptions(w, options)
	return nil
}

func (s *Server) beginPasskeyLogin(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		MFAToken string `json:"mfa_token"`
	}
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	options, err := s.svc.BeginPasskeyLogin(r.Context(), client(r), in.MFAToken)
	if authd.ErrorCode(err) == authd.EInvalidToken {
		return badRequest{err} // a dead mfa_token is a wrong body, as at /v1/auth/mfa/verify
	}
	if err != nil {
		return err
	}
	writeOptions(w, options)
	return nil
}

func (s *Server) finishPasskeyLogin(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Credential json.RawMessage `json:"credential"`
		DeviceInfo string          `json:"device_info"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	if len(in.Credential) == 0 {
		return required("credential", "")
	}
	pair, err := s.svc.FinishPasskeyLogin(r.Context(), client(r), in.Credential, in.DeviceInfo)
	if err != nil {
		return err
	}
	writePair(w, pair)
	return nil
}
