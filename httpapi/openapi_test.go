package httpapi_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/httpapi"
	"github.com/authd/authd/storetest"
)

// TestOpenAPIMatchesRoutes keeps the document and the router in agreement:
// every route is documented and every documented operation is routed, and
// an API route takes the query parameters documented, no more (the router
// refuses the others, 400, which each documents) and no fewer. The
// operations tagged openid are the OpenID provider's, mounted from package
// oidc, whose own test holds them to its routes.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Tags       []string `json:"tags"`
			Parameters []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi version %q, want 3.1.0", doc.OpenAPI)
	}
	var documented, routed []string
	query := map[string][]string{} // documented query parameters by operation
	for path, ops := range doc.Paths {
		for method, op := range ops {
			name := strings.ToUpper(method) + " " + path
			if !slices.Contains(op.Tags, "openid") {
				documented = append(documented, name)
			}
			for _, p := range op.Parameters {
				if p.In == "query" {
					query[name] = append(query[name], p.Name)
				}
			}
			if _, ok := op.Responses["400"]; strings.HasPrefix(path, "/v1/") && !ok {
				t.Errorf("openapi.json: %s lacks its 400 (a query parameter it does not take)", name)
			}
			// Every /v1/ route refuses a body declared too large, first;
			// every one but a GET reads a body, even one that takes no
			// field (nothing or {}): of another type it is refused.
			if _, ok := op.Responses["413"]; strings.HasPrefix(path, "/v1/") && !ok {
				t.Errorf("openapi.json: %s lacks its 413", name)
			}
			if _, ok := op.Responses["415"]; strings.HasPrefix(path, "/v1/") && method != "get" && !ok {
				t.Errorf("openapi.json: %s lacks its 415", name)
			}
		}
	}
	e := newEnv(t, openSQLite(t))
	for _, r := range append(e.api.Routes(), e.adminAPI.Routes()...) {
		if r.Path == "/healthz" && slices.Contains(routed, "GET /healthz") {
			continue // on both listeners
		}
		op := r.Method + " " + r.Path
		routed = append(routed, op)
		if strings.HasPrefix(r.Path, "/v1/") {
			got, want := slices.Sorted(slices.Values(r.Query)), slices.Sorted(slices.Values(query[op]))
			if !slices.Equal(got, want) {
				t.Errorf("%s takes the query parameters %q, openapi.json documents %q", op, got, want)
			}
		}
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

// TestOpenAPISchemasMatchViews: the properties of the schemas the admin
// API answers with are the JSON fields of the views it writes, both ways,
// so that a field added to a view (lock_reason) is documented.
func TestOpenAPISchemasMatchViews(t *testing.T) {
	t.Parallel()
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	// A validation_failed problem always names its fields (SPEC §5).
	var problemDoc struct {
		Components struct {
			Schemas struct {
				Problem struct {
					If struct {
						Properties struct {
							Code struct {
								Const string `json:"const"`
							} `json:"code"`
						} `json:"properties"`
					} `json:"if"`
					Then struct {
						Required []string `json:"required"`
					} `json:"then"`
				} `json:"Problem"`
			} `json:"schemas"`
		} `json:"components"`
	}
	problem := &problemDoc.Components.Schemas.Problem
	if err := json.Unmarshal(httpapi.OpenAPI(), &problemDoc); err != nil ||
		problem.If.Properties.Code.Const != "validation_failed" || !slices.Equal(problem.Then.Required, []string{"errors"}) {
		t.Errorf("the Problem schema does not require errors of validation_failed: %+v, %v", *problem, err)
	}
	u := storetest.NewUser("view@example.org")
	oc := &authd.OAuthClient{ID: "app", Name: "App", Type: authd.ClientConfidential, RedirectURIs: []string{"https://a.example.org/cb"}}
	for schema, view := range map[string]any{
		"AdminUser":   httpapi.AdminUserView(u),
		"Client":      httpapi.ClientView(oc),
		"SecurityLog": httpapi.SecurityLogView(&authd.SecurityLog{ID: authd.NewID()}),
	} {
		raw, err := json.Marshal(view)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			t.Fatal(err)
		}
		documented := slices.Sorted(maps.Keys(doc.Components.Schemas[schema].Properties))
		written := slices.Sorted(maps.Keys(fields))
		if !slices.Equal(documented, written) {
			t.Errorf("schema %s documents %v; the view writes %v", schema, documented, written)
		}
	}
}
