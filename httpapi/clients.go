package httpapi

import (
	"net/http"
	"time"

	"github.com/authd/authd"
)

// The admin API's registry of OpenID Connect clients (issue 10).

// clientOut is a client as the admin API (and `authd clients --json`)
// shows it: never its secret's digest.
type clientOut struct {
	ClientID               string    `json:"client_id"`
	Name                   string    `json:"name"`
	Type                   string    `json:"type"`
	RedirectURIs           []string  `json:"redirect_uris"`
	PostLogoutRedirectURIs []string  `json:"post_logout_redirect_uris"`
	FirstParty             bool      `json:"first_party"`
	RequirePKCE            bool      `json:"require_pkce"`
	CreatedAt              time.Time `json:"created_at"`
	UpdatedAt              time.Time `json:"updated_at"`
}

// ClientView is a client as the admin API shows it.
func ClientView(c *authd.OAuthClient) any { return toClient(c) }

func toClient(c *authd.OAuthClient) clientOut {
	return clientOut{ClientID: c.ID, Name: c.Name, Type: string(c.Type), RedirectURIs: c.RedirectURIs,
		PostLogoutRedirectURIs: c.PostLogoutRedirectURIs, FirstParty: c.FirstParty, RequirePKCE: c.PKCERequired(),
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

// clientWithSecret is a new client, or a rotated secret, the one time its
// secret is shown.
type clientWithSecret struct {
	clientOut
	ClientSecret string `json:"client_secret,omitempty"`
}

// ClientSecretView is a client with the secret it was just given.
func ClientSecretView(c *authd.OAuthClient, secret string) any {
	return clientWithSecret{clientOut: toClient(c), ClientSecret: secret}
}

func (s *Server) adminClients(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.svc.OAuthClients(r.Context())
	if err != nil {
		return err
	}
	items := make([]clientOut, 0, len(cs))
	for _, c := range cs {
		items = append(items, toClient(c))
	}
	// Clients are few and registered by hand: one page holds them all.
	writeJSON(w, http.StatusOK, list[clientOut]{Items: items})
	return nil
}

func (s *Server) adminCreateClient(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		ClientID               string   `json:"client_id"`
		Name                   string   `json:"name"`
		Type                   string   `json:"type"`
		RedirectURIs           []string `json:"redirect_uris"`
		PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris"`
		FirstParty             bool     `json:"first_party"`
		RequirePKCE            bool     `json:"require_pkce"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	c, secret, err := s.svc.CreateClient(r.Context(), client(r), authd.ClientSpec{ID: in.ClientID, Name: in.Name,
		Type: authd.ClientType(in.Type), RedirectURIs: in.RedirectURIs, PostLogoutRedirectURIs: in.PostLogoutRedirectURIs,
		FirstParty: in.FirstParty, RequirePKCE: in.RequirePKCE})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/admin/clients/"+c.ID)
	writeJSON(w, http.StatusCreated, clientWithSecret{clientOut: toClient(c), ClientSecret: secret})
	return nil
}

func (s *Server) adminClient(w http.ResponseWriter, r *http.Request) error {
	c, err := s.svc.OAuthClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toClient(c))
	return nil
}

// adminUpdateClient changes a client in place: the fields given, the
// others as they are. Its sessions and consents stay.
func (s *Server) adminUpdateClient(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Name                   *string   `json:"name"`
		RedirectURIs           *[]string `json:"redirect_uris"`
		PostLogoutRedirectURIs *[]string `json:"post_logout_redirect_uris"`
		FirstParty             *bool     `json:"first_party"`
		RequirePKCE            *bool     `json:"require_pkce"`
	}
	if err := decodeJSON(w, r, &in); err != nil {
		return err
	}
	ch := authd.ClientChange{Name: in.Name, FirstParty: in.FirstParty, RequirePKCE: in.RequirePKCE}
	if in.RedirectURIs != nil {
		ch.RedirectURIs = append([]string{}, *in.RedirectURIs...) // [] is given, and refused
	}
	if in.PostLogoutRedirectURIs != nil {
		ch.PostLogoutRedirectURIs = append([]string{}, *in.PostLogoutRedirectURIs...) // []: none
	}
	c, err := s.svc.UpdateClient(r.Context(), client(r), r.PathValue("id"), ch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toClient(c))
	return nil
}

func (s *Server) adminDeleteClient(w http.ResponseWriter, r *http.Request) error {
	return noContent(w, s.svc.DeleteClient(r.Context(), client(r), r.PathValue("id")))
}

func (s *Server) adminRotateClientSecret(w http.ResponseWriter, r *http.Request) error {
	var secret string
	err := s.svc.RotateClientSecret(r.Context(), client(r), r.PathValue("id"), func(s string) error {
		secret = s
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"client_id": r.PathValue("id"), "client_secret": secret})
	return nil
}
