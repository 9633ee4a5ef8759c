// Package htmlform reads a page's forms, links and scripts as a browser
// would, their addresses resolved against the page's own: for tests that
// go where a page sends the browser, never to a path they wrote
// themselves.
package htmlform

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/net/html"
)

// Page is what Parse read.
type Page struct {
	URL     *url.URL
	Forms   []*Form
	Links   []*url.URL // each <a href>, resolved
	Scripts []string   // the text of each inline <script>
}

// Form is a <form>.
type Form struct {
	ID     string
	Method string   // in upper case; GET when not given
	Action *url.URL // resolved; the page's own URL when not given
	// Fields are the values the form sends as it is: its hidden inputs'.
	Fields url.Values
	// Inputs are the names of all its inputs, hidden or not.
	Inputs []string
	// Buttons are its named submit buttons: name and value.
	Buttons [][2]string
}

// Parse reads body, the page at u.
func Parse(u *url.URL, body string) (*Page, error) {
	p := &Page{URL: u}
	z := html.NewTokenizer(strings.NewReader(body))
	var form *Form
	inScript := false
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if z.Err() == io.EOF {
				return p, nil
			}
			return nil, z.Err()
		case html.TextToken:
			if inScript {
				p.Scripts = append(p.Scripts, string(z.Text()))
			}
			continue
		case html.EndTagToken:
			switch name, _ := z.TagName(); string(name) {
			case "form":
				form = nil
			case "script":
				inScript = false
			}
			continue
		case html.StartTagToken, html.SelfClosingTagToken:
		default:
			continue
		}
		name, _ := z.TagName()
		attrs := map[string]string{}
		for {
			k, v, more := z.TagAttr()
			attrs[string(k)] = string(v)
			if !more {
				break
			}
		}
		switch string(name) {
		case "script":
			inScript = tt == html.StartTagToken
		case "a":
			if href, ok := attrs["href"]; ok {
				l, err := u.Parse(href)
				if err != nil {
					return nil, fmt.Errorf("link %q: %w", href, err)
				}
				p.Links = append(p.Links, l)
			}
		case "form":
			action, err := u.Parse(attrs["action"])
			if err != nil {
				return nil, fmt.Errorf("form action %q: %w", attrs["action"], err)
			}
			method := strings.ToUpper(attrs["method"])
			if method == "" {
				method = "GET"
			}
			form = &Form{ID: attrs["id"], Method: method, Action: action, Fields: url.Values{}}
			p.Forms = append(p.Forms, form)
		case "input":
			if form != nil && attrs["name"] != "" {
				form.Inputs = append(form.Inputs, attrs["name"])
				if attrs["type"] == "hidden" {
					form.Fields.Set(attrs["name"], attrs["value"])
				}
			}
		case "button":
			if form != nil && attrs["name"] != "" && (attrs["type"] == "" || attrs["type"] == "submit") {
				form.Buttons = append(form.Buttons, [2]string{attrs["name"], attrs["value"]})
			}
		}
	}
}

// FormWith is the first form with an input named name, or nil.
func (p *Page) FormWith(name string) *Form {
	for _, f := range p.Forms {
		if f.Has(name) {
			return f
		}
	}
	return nil
}

// FormByID is the form of that id, or nil.
func (p *Page) FormByID(id string) *Form {
	for _, f := range p.Forms {
		if f.ID == id {
			return f
		}
	}
	return nil
}

// Has reports whether the form has an input named name.
func (f *Form) Has(name string) bool {
	return slices.Contains(f.Inputs, name)
}

// Addresses are the page's links and form actions on its own host: where
// it sends a browser on the server that served it.
func (p *Page) Addresses() []*url.URL {
	var out []*url.URL
	for _, l := range p.Links {
		if l.Host == p.URL.Host {
			out = append(out, l)
		}
	}
	for _, f := range p.Forms {
		if f.Action.Host == p.URL.Host {
			out = append(out, f.Action)
		}
	}
	return out
}

var (
	// constRE finds a script's string constants; fetchRE its first
	// fetch(ADDRESS, …).
	constRE = regexp.MustCompile(`const (\w+) = ("[^"]*");`)
	fetchRE = regexp.MustCompile(`fetch\(([^,]+),`)
)

// Fetched is the address the page's scripts first fetch, computed as the
// script does: its ADDRESS is string literals, the scripts' string
// constants and the names in vars (what the script computes otherwise),
// joined by +.
func (p *Page) Fetched(vars map[string]string) (*url.URL, error) {
	script := strings.Join(p.Scripts, "\n")
	values := map[string]string{}
	for _, m := range constRE.FindAllStringSubmatch(script, -1) {
		var v string
		if json.Unmarshal([]byte(m[2]), &v) == nil {
			values[m[1]] = v
		}
	}
	maps.Copy(values, vars)
	fetch := fetchRE.FindStringSubmatch(script)
	if fetch == nil {
		return nil, fmt.Errorf("no fetch in the scripts of %s", p.URL)
	}
	var address string
	for part := range strings.SplitSeq(fetch[1], "+") {
		part = strings.TrimSpace(part)
		v, ok := values[part]
		if !ok && json.Unmarshal([]byte(part), &v) != nil {
			return nil, fmt.Errorf("the script of %s fetches %s: %s is unknown", p.URL, fetch[1], part)
		}
		address += v
	}
	return p.URL.Parse(address)
}
