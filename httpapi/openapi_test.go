package httpapi_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/authd/authd/httpapi"
)

// TestOpenAPIMatchesRoutes keeps the document and the router in agreement:
// every route is documented and every documented operation is routed. The
// operations tagged openid are the OpenID provider's, mounted from package
// oidc, whose own test holds them to its routes.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Tags []string `json:"tags"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi version %q, want 3.1.0", doc.OpenAPI)
	}
	var documented, routed []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !slices.Contains(op.Tags, "openid") {
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	e := newEnv(t, openSQLite(t))
	for _, r := range append(e.api.Routes(), e.adminAPI.Routes()...) {
		if r.Path == "/healthz" && slices.Contains(routed, "GET /healthz") {
			continue // on both listeners
		}
		routed = append(routed, r.Method+" "+r.Path)
	}
	slices.Sort(documented)
	slices.Sort(routed)
	for _, r := range routed {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routed, d) {
			t.Errorf("openapi.json documents %s, which is not routed", d)
		}
	}
	if r := e.do("GET", "/openapi.json", nil); r.status != 200 || r.body["openapi"] != "3.1.0" {
		t.Errorf("GET /openapi.json: %d", r.status)
	}
}
