package htmlform

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// Browser is a test's browser in front of a proxy that serves authd under
// a path: it keeps cookies, follows redirects on the proxy's host and
// stops at any other (a relying party's callback), reads each HTML page
// it gets, and fails the test when a redirect or an address a page gives
// on the proxy's host leads outside the path.
type Browser struct {
	T    testing.TB
	Last *http.Response // the last answer
	Body string         // its body
	Page *Page          // its page, when it is HTML

	host, prefix string
	http         *http.Client
}

// NewBrowser is a Browser for the proxy at host (host:port) serving authd
// under prefix ("/idp").
func NewBrowser(t testing.TB, host, prefix string) *Browser {
	jar, _ := cookiejar.New(nil)
	b := &Browser{T: t, host: host, prefix: prefix}
	b.http = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != b.host {
			return http.ErrUseLastResponse
		}
		if !strings.HasPrefix(req.URL.Path, prefix+"/") {
			t.Errorf("%s %s redirected to %s, outside %s", via[len(via)-1].Method, via[len(via)-1].URL, req.URL, prefix)
		}
		return nil
	}}
	return b
}

// Do sends req and reads the answer.
func (b *Browser) Do(req *http.Request) *Browser {
	b.T.Helper()
	resp, err := b.http.Do(req)
	if err != nil {
		b.T.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	b.Last, b.Body, b.Page = resp, string(body), nil
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		if b.Page, err = Parse(resp.Request.URL, b.Body); err != nil {
			b.T.Fatalf("%s: %v", resp.Request.URL, err)
		}
		for _, a := range b.Page.Addresses() {
			if !strings.HasPrefix(a.Path, b.prefix+"/") {
				b.T.Errorf("the page at %s sends the browser to %s, outside %s", resp.Request.URL, a, b.prefix)
			}
		}
	}
	return b
}

// Get opens u.
func (b *Browser) Get(u string) *Browser {
	b.T.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return b.Do(req)
}

// Submit sends f with its hidden fields and set (name, value, …).
func (b *Browser) Submit(f *Form, set ...string) *Browser {
	b.T.Helper()
	v := url.Values{}
	for k, vs := range f.Fields {
		v[k] = vs
	}
	for i := 0; i+1 < len(set); i += 2 {
		v.Set(set[i], set[i+1])
	}
	req, _ := http.NewRequest(f.Method, f.Action.String(), strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.Do(req)
}

// Form is the page's first form with an input named name.
func (b *Browser) Form(name string) *Form {
	b.T.Helper()
	if b.Page == nil || b.Page.FormWith(name) == nil {
		b.T.Fatalf("no form with %s at %s: %d %s", name, b.Last.Request.URL, b.Last.StatusCode, b.Body)
	}
	return b.Page.FormWith(name)
}

// Link is the page's link whose path ends in suffix.
func (b *Browser) Link(suffix string) string {
	b.T.Helper()
	if b.Page != nil {
		for _, l := range b.Page.Links {
			if strings.HasSuffix(l.Path, suffix) {
				return l.String()
			}
		}
	}
	b.T.Fatalf("no link to …%s at %s: %s", suffix, b.Last.Request.URL, b.Body)
	return ""
}
