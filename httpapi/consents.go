package httpapi

import (
	"net/http"
	"time"

	"github.com/authd/authd"
)

// consentOut is a client the user has let in (OpenID Connect).
type consentOut struct {
	ClientID   string    `json:"client_id"`
	ClientName string    `json:"client_name"`
	Scopes     []string  `json:"scopes"`
	GrantedAt  time.Time `json:"granted_at"`
}

func (s *Server) consents(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	list, clients, err := s.svc.Consents(r.Context(), a)
	if err != nil {
		return err
	}
	items := make([]consentOut, 0, len(list))
	for _, c := range list {
		items = append(items, consentOut{ClientID: c.ClientID, ClientName: clients[c.ClientID].Name, Scopes: c.Scopes,
			GrantedAt: c.GrantedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
	return nil
}

func (s *Server) revokeConsent(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
	return noContent(w, s.svc.RevokeConsent(r.Context(), client(r), a, r.PathValue("client_id")))
}
