package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The parts of the SVG the tests read.
type svgDoc struct {
	Groups []svgGroup `xml:"g"`
}

type svgGroup struct {
	Class     string        `xml:"class,attr"`
	ID        string        `xml:"id,attr"`
	Rects     []svgRect     `xml:"rect"`
	Polylines []svgPolyline `xml:"polyline"`
	Circles   []svgCircle   `xml:"circle"`
	Texts     []svgText     `xml:"text"`
}

type svgRect struct {
	Class  string  `xml:"class,attr"`
	X      float64 `xml:"x,attr"`
	Y      float64 `xml:"y,attr"`
	Width  float64 `xml:"width,attr"`
	Height float64 `xml:"height,attr"`
}

type svgPolyline struct {
	Label  string `xml:"data-label,attr"`
	Points string `xml:"points,attr"`
}

type svgCircle struct {
	Label string  `xml:"data-label,attr"`
	CX    float64 `xml:"cx,attr"`
	CY    float64 `xml:"cy,attr"`
}

type svgText struct {
	Class string   `xml:"class,attr"`
	Text  string   `xml:",chardata"`
	Spans []string `xml:"tspan"`
}

// writeRun writes a -json file with results at the given client counts;
// rate and p99 grow with the clients so that the lines' direction shows.
func writeRun(t *testing.T, label string, runs map[string][]int) string {
	t.Helper()
	rep := loadReport{URL: "http://127.0.0.1:8080", Label: label, Started: "2026-12-01T05:00:00Z", DurationS: 10, Cores: 2, GoVersion: "go1.26.8"}
	for _, sc := range []string{"me", "refresh", "register"} {
		for _, c := range runs[sc] {
			rep.Results = append(rep.Results, result{Scenario: sc, Clients: c, OK: int64(1000 * c), ElapsedS: 10,
				Rate: 100 * float64(c), P50Ms: float64(c) / 2, P90Ms: float64(c), P99Ms: 1.5 * float64(c), MaxMs: 2 * float64(c)})
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), label+".json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func chart(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"chart"}, args...), &out, &errOut)
	return code, errOut.String()
}

const hostile = `<pg & "x">`

func TestChart(t *testing.T) {
	pg := writeRun(t, "postgres", map[string][]int{"me": {1, 8, 32, 64}, "refresh": {1, 8, 32, 64}})
	other := writeRun(t, "other", map[string][]int{"me": {1, 8, 32}, "refresh": {64, 1, 8, 32}, "register": {16}})
	// The label is a user's free text: it must reach the SVG escaped.
	b, _ := os.ReadFile(other)
	os.WriteFile(other, bytes.Replace(b, []byte(`"label":"other"`), []byte(`"label":"<pg \u0026 \"x\">"`), 1), 0o644)
	out := filepath.Join(t.TempDir(), "chart.svg")
	// Flags may follow the files.
	if code, stderr := chart(t, pg, other, "-out", out); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc svgDoc
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("not XML: %v", err)
	}
	if bytes.Contains(raw, []byte("<script")) || bytes.Contains(raw, []byte("href")) || bytes.Contains(raw, []byte(hostile)) {
		t.Errorf("the SVG has a script, an outside reference or an unescaped label")
	}
	if !bytes.Contains(raw, []byte("&lt;pg &amp; &#34;x&#34;&gt;")) {
		t.Errorf("the label is not escaped as expected")
	}

	legend := doc.Groups[0]
	if legend.Class != "legend" || len(legend.Texts) != 2 || !slices.Equal(legend.Texts[1].Spans, []string{hostile}) ||
		!slices.Equal(legend.Texts[0].Spans, []string{"postgres"}) {
		t.Errorf("legend: %+v", legend)
	}

	want := []struct {
		id      string
		unit    string
		clients []string // the x ticks
		series  map[string]int
	}{
		{"me-rate", "req/s", []string{"1", "8", "32", "64"}, map[string]int{"postgres": 4, hostile: 3}},
		{"me-p99", "p99 (ms)", []string{"1", "8", "32", "64"}, map[string]int{"postgres": 4, hostile: 3}},
		{"refresh-rate", "req/s", []string{"1", "8", "32", "64"}, map[string]int{"postgres": 4, hostile: 4}},
		{"refresh-p99", "p99 (ms)", []string{"1", "8", "32", "64"}, map[string]int{"postgres": 4, hostile: 4}},
		{"register-rate", "req/s", []string{"16"}, map[string]int{hostile: 1}},
		{"register-p99", "p99 (ms)", []string{"16"}, map[string]int{hostile: 1}},
	}
	panels := doc.Groups[1:]
	if len(panels) != len(want) {
		t.Fatalf("%d panels, want %d", len(panels), len(want))
	}
	for i, w := range want {
		p := panels[i]
		if p.ID != w.id || p.Class != "panel" {
			t.Errorf("panel %d is %q, want %q", i, p.ID, w.id)
			continue
		}
		var xticks, yticks, labels []string
		for _, tx := range p.Texts {
			switch tx.Class {
			case "xtick":
				xticks = append(xticks, tx.Text)
			case "ytick":
				yticks = append(yticks, tx.Text)
			case "xlabel", "ylabel":
				labels = append(labels, tx.Text)
			}
		}
		if !slices.Equal(xticks, w.clients) || !slices.Equal(labels, []string{"clients (log scale)", w.unit}) ||
			len(yticks) < 2 || yticks[0] != "0" {
			t.Errorf("%s: x ticks %q, y ticks %q, axis labels %q", w.id, xticks, yticks, labels)
		}
		plot := p.Rects[0]
		inside := func(x, y float64) bool {
			return x >= plot.X && x <= plot.X+plot.Width && y >= plot.Y && y <= plot.Y+plot.Height
		}
		if plot.Class != "plot" || plot.Width <= 0 || plot.Height <= 0 {
			t.Fatalf("%s: plot area %+v", w.id, plot)
		}
		if len(p.Polylines) != len(w.series) {
			t.Errorf("%s: %d lines, want %d", w.id, len(p.Polylines), len(w.series))
		}
		for _, line := range p.Polylines {
			var xs, ys []float64
			for pt := range strings.FieldsSeq(line.Points) {
				x, y, _ := strings.Cut(pt, ",")
				fx, errX := strconv.ParseFloat(x, 64)
				fy, errY := strconv.ParseFloat(y, 64)
				if errX != nil || errY != nil || !inside(fx, fy) {
					t.Errorf("%s %s: point %q outside the plot %+v", w.id, line.Label, pt, plot)
				}
				xs, ys = append(xs, fx), append(ys, fy)
			}
			if len(xs) != w.series[line.Label] {
				t.Errorf("%s %s: %d points in the line, want %d", w.id, line.Label, len(xs), w.series[line.Label])
			}
			// More clients lie to the right; the values grow with them
			// here, so each point lies higher (a smaller y) than the last.
			for j := 1; j < len(xs); j++ {
				if xs[j] <= xs[j-1] || ys[j] >= ys[j-1] {
					t.Errorf("%s %s: point %d (%v,%v) does not follow (%v,%v)", w.id, line.Label, j, xs[j], ys[j], xs[j-1], ys[j-1])
				}
			}
		}
		markers := map[string]int{}
		for _, c := range p.Circles {
			markers[c.Label]++
			if !inside(c.CX, c.CY) {
				t.Errorf("%s %s: marker (%v,%v) outside the plot %+v", w.id, c.Label, c.CX, c.CY, plot)
			}
		}
		if len(markers) != len(w.series) {
			t.Errorf("%s: markers %v, want %v", w.id, markers, w.series)
		}
		for label, n := range w.series {
			if markers[label] != n {
				t.Errorf("%s %s: %d markers, want %d", w.id, label, markers[label], n)
			}
		}
	}

	again := filepath.Join(t.TempDir(), "again.svg")
	if code, stderr := chart(t, "-out", again, pg, other); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if b, _ := os.ReadFile(again); !bytes.Equal(b, raw) {
		t.Errorf("the same input gave different SVG")
	}
}

func TestNiceScale(t *testing.T) {
	for _, c := range []struct {
		max       float64
		step, top float64
	}{
		{1000, 200, 1000},
		{1234, 250, 1250},
		{18749, 5000, 20000},
		{7, 2, 8},
		{45.2, 10, 50},
		{0.3, 0.1, 0.3},
		{1, 0.2, 1},
		{0, 1, 1},
		{-5, 1, 1},
	} {
		step, top := niceScale(c.max, 5)
		if !near(step, c.step) || !near(top, c.top) {
			t.Errorf("niceScale(%v, 5) = %v, %v; want %v, %v", c.max, step, top, c.step, c.top)
		}
		if c.max > 0 && (top < c.max || top/step > 5+1e-9) {
			t.Errorf("niceScale(%v, 5): top %v below the maximum or more than 5 steps of %v", c.max, top, step)
		}
	}
	for _, c := range []struct {
		v, step float64
		want    string
	}{
		{0, 200, "0"}, {0, 5000, "0"}, {600, 200, "600"}, {12500, 2500, "12.5k"}, {20000, 5000, "20k"},
		{0.75, 0.25, "0.75"}, {0.30000000000000004, 0.1, "0.3"}, {7.5, 2.5, "7.5"},
	} {
		if got := tickLabel(c.v, c.step); got != c.want {
			t.Errorf("tickLabel(%v, %v) = %q, want %q", c.v, c.step, got, c.want)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestChartErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := writeRun(t, "good", map[string][]int{"me": {1, 8}})
	out := filepath.Join(dir, "out.svg")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string // in the first line
	}{
		{"missing file", []string{"-out", out, good, filepath.Join(dir, "nope.json")}, 1, "nope.json: no such file"},
		{"not JSON", []string{"-out", out, file("text.json", "introspect 32 clients 18749 req/s")}, 1, "is not authd-load JSON"},
		{"no results", []string{"-out", out, file("empty.json", `{"label":"x","results":[]}`)}, 1, "has no results"},
		{"zero rate", []string{"-out", out, good, file("zero.json", `{"results":[{"scenario":"me","clients":4,"ok":0,"rate":0}]}`)}, 1,
			`"me" at 4 clients has no successful request`},
		{"no clients", []string{"-out", out, file("noclients.json", `{"results":[{"scenario":"me","clients":0,"rate":5}]}`)}, 1, `"me" has 0 clients`},
		{"output in a missing directory", []string{"-out", filepath.Join(dir, "no", "such", "dir.svg"), good}, 1, "no such file"},
		{"no -out", []string{good}, 2, "-out is required"},
		{"no input", []string{"-out", out}, 2, "no input files"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, stderr := chart(t, c.args...)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if code != c.code || len(lines) != 2 || !strings.HasPrefix(lines[0], "authd-load chart: ") ||
				!strings.Contains(lines[0], c.want) || !strings.HasPrefix(lines[1], "hint: ") {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d, one line with %q and a hint", code, stderr, c.code, c.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed run wrote %s", out)
			}
		})
	}
	if code, _ := chart(t, "-no-such-flag", good); code != 2 {
		t.Errorf("a bad flag: exit %d, want 2", code)
	}
	if code, stderr := chart(t, "-help"); code != 0 || !strings.Contains(stderr, "Usage: authd-load chart") {
		t.Errorf("-help: exit %d, %q", code, stderr)
	}
}
