// Package templates loads the HTML templates operators may override from
// AUTHD_TEMPLATES_DIR: a file there replaces the embedded one of the same
// name, and everything is checked when it loads, so a broken template stops
// start-up with the file's name instead of failing in front of a user.
package templates

import (
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Read returns the text of the template file name: dir/name when dir is
// not empty and has it, else the embedded one.
func Read(embedded fs.FS, dir, name string) (string, error) {
	if dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			return string(b), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("template %s: %w", name, err)
		}
	}
	b, err := fs.ReadFile(embedded, name)
	return string(b), err
}

// Pages parses a set of pages: layout.html defines "layout", which calls
// "content", and NAME.html defines "NAME-content" for each of names. Each
// page is rendered once with sample, so a template that does not parse,
// lacks its define or names a field sample's type does not have is an
// error. The result maps "NAME-content" to its page.
func Pages(embedded fs.FS, dir string, names []string, sample any) (map[string]*template.Template, error) {
	layout, err := Read(embedded, dir, "layout.html")
	if err != nil {
		return nil, err
	}
	if _, err := template.New("layout.html").Parse(layout); err != nil {
		return nil, fmt.Errorf("page template layout.html: %w", err)
	}
	out := map[string]*template.Template{}
	for _, name := range names {
		content, err := Read(embedded, dir, name+".html")
		if err != nil {
			return nil, err
		}
		t, err := template.New(name).Parse(layout)
		if err == nil {
			_, err = t.Parse(content)
		}
		if err == nil {
			_, err = t.New("content").Parse(`{{template "` + name + `-content" .}}`)
		}
		if err == nil && (t.Lookup("layout") == nil || t.Lookup(name+"-content") == nil) {
			err = fmt.Errorf(`layout.html must {{define "layout"}} and %s.html {{define "%s-content"}}`, name, name)
		}
		if err == nil {
			err = t.ExecuteTemplate(io.Discard, "layout", sample)
		}
		if err != nil {
			return nil, fmt.Errorf("page template %s.html: %w", name, err)
		}
		out[name+"-content"] = t
	}
	return out, nil
}
