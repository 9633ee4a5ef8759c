package main

// authd-load chart draws the JSON of one or more runs (-json) as one SVG:
// per scenario, throughput and p99 latency against the client count, one
// line per run. The SVG is written by hand (no scripts, no external fonts or
// styles) so that browsers and GitHub show it as it is, and it depends only
// on its input: the same files give the same bytes.

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// chartInput is one run to draw: its report and the file it came from.
type chartInput struct {
	path string
	loadReport
}

// name is the run's legend entry: its -label, or its file's name.
func (in chartInput) name() string {
	if in.Label != "" {
		return in.Label
	}
	return filepath.Base(in.path)
}

// inputError is bad input: a message and a hint for the user.
type inputError struct{ msg, hint string }

func (e *inputError) Error() string { return e.msg }

func runChart(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("authd-load chart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the SVG file to write")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: authd-load chart -out FILE.svg IN.json [IN2.json …]\n\n"+
			"Draws the files that authd-load -json wrote (each run with its -label) as one SVG:\n"+
			"throughput and p99 latency against clients, per scenario.\n\n")
		fs.PrintDefaults()
	}
	// Flags may come after the files too.
	var files []string
	for rest := args; ; rest = fs.Args()[1:] {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
	}
	usage := "hint: authd-load chart -out FILE.svg IN.json [IN2.json …]"
	switch {
	case *out == "":
		fmt.Fprintf(stderr, "authd-load chart: -out is required\n%s\n", usage)
		return 2
	case len(files) == 0:
		fmt.Fprintf(stderr, "authd-load chart: no input files\n%s\n", usage)
		return 2
	}
	inputs := make([]chartInput, 0, len(files))
	for _, f := range files {
		in, err := readChartInput(f)
		if err != nil {
			var ie *inputError
			hint := "give the files that authd-load -json FILE wrote"
			if errors.As(err, &ie) {
				hint = ie.hint
			}
			fmt.Fprintf(stderr, "authd-load chart: %v\nhint: %s\n", err, hint)
			return 1
		}
		inputs = append(inputs, in)
	}
	if err := os.WriteFile(*out, drawChart(inputs), 0o644); err != nil {
		fmt.Fprintf(stderr, "authd-load chart: %v\nhint: -out needs a path in a directory that exists and is writable\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return 0
}

// readChartInput reads and checks one -json file.
func readChartInput(path string) (chartInput, error) {
	in := chartInput{path: path}
	b, err := os.ReadFile(path)
	if err != nil {
		return in, err
	}
	if err := json.Unmarshal(b, &in.loadReport); err != nil {
		return in, &inputError{fmt.Sprintf("%s is not authd-load JSON: %v", path, err), "give the files that authd-load -json FILE wrote"}
	}
	if len(in.Results) == 0 {
		return in, &inputError{path + " has no results",
			"run a throughput scenario (introspect, me, refresh, login, register; burst has none) with -json"}
	}
	for _, r := range in.Results {
		switch {
		case r.Clients < 1:
			return in, &inputError{fmt.Sprintf("%s: %q has %d clients", path, r.Scenario, r.Clients),
				"every result needs one client or more: give the files that authd-load -json FILE wrote"}
		case !(r.Rate > 0):
			return in, &inputError{fmt.Sprintf("%s: %q at %d clients has no successful request (rate %v)", path, r.Scenario, r.Clients, r.Rate),
				"rerun that scenario: a run without a successful request has no throughput or latency to draw"}
		}
	}
	return in, nil
}

// niceScale returns a step of 1, 2, 2.5 or 5 times a power of ten that
// splits 0..max into at most n steps, and the multiple of it that ends the
// axis at or above max.
func niceScale(max float64, n int) (step, top float64) {
	if !(max > 0) || n < 1 {
		return 1, 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw*(1-1e-9) {
			step = m * mag
			break
		}
	}
	return step, math.Ceil(max/step-1e-9) * step
}

// tickLabel writes v with as many decimals as step needs, in thousands
// ("12.5k") when the step is a thousand or more.
func tickLabel(v, step float64) string {
	suffix := ""
	if step >= 1000 && v != 0 {
		v, step, suffix = v/1000, step/1000, "k"
	}
	d := 0
	for d < 6 && math.Abs(step*math.Pow10(d)-math.Round(step*math.Pow10(d))) > 1e-6 {
		d++
	}
	return strconv.FormatFloat(v, 'f', d, 64) + suffix
}

// The layout, in SVG pixels.
const (
	margin         = 20
	panelW, panelH = 370, 240
	plotLeft       = 58 // room for the y tick labels, inside the panel
	plotRight      = 14
	plotTop        = 28 // the panel's title
	plotBottom     = 44 // x tick labels and the axis label
	inset          = 12 // keeps the first and last client count off the axes
	legendLine     = 18
)

// palette is the Okabe–Ito set, which colour-blind readers can tell apart.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// drawChart returns the SVG of the inputs: a legend, then one row per
// scenario (in order of first appearance) with a throughput and a p99 panel.
func drawChart(inputs []chartInput) []byte {
	var scenarios []string
	for _, in := range inputs {
		for _, r := range in.Results {
			if !slices.Contains(scenarios, r.Scenario) {
				scenarios = append(scenarios, r.Scenario)
			}
		}
	}
	header := 50 + legendLine*len(inputs)
	width := 3*margin + 2*panelW
	height := header + len(scenarios)*(panelH+margin) + margin
	var b bytes.Buffer
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"+
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"+
		"<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n"+
		"<text x=\"%d\" y=\"28\" font-size=\"15\" font-weight=\"bold\">authd-load: throughput and p99 latency by concurrent clients</text>\n",
		width, height, width, height, width, height, margin)
	b.WriteString("<g class=\"legend\">\n")
	for i, in := range inputs {
		y := 50 + legendLine*i
		fmt.Fprintf(&b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/><circle cx=\"%d\" cy=\"%d\" r=\"3\" fill=\"%s\"/>"+
			"<text x=\"%d\" y=\"%d\"><tspan font-weight=\"bold\">%s</tspan> — %s, %s per run, %d cores, %s</text>\n",
			margin, y-4, margin+24, y-4, palette[i%len(palette)], margin+12, y-4, palette[i%len(palette)],
			margin+32, y, esc(in.name()), esc(in.URL), esc(strconv.FormatFloat(in.DurationS, 'f', -1, 64)+" s"), in.Cores, esc(in.Started))
	}
	b.WriteString("</g>\n")
	for row, sc := range scenarios {
		y := header + row*(panelH+margin)
		drawPanel(&b, inputs, sc, margin, y, "throughput", "req/s", "rate", func(r result) float64 { return r.Rate })
		drawPanel(&b, inputs, sc, 2*margin+panelW, y, "p99 latency", "p99 (ms)", "p99", func(r result) float64 { return r.P99Ms })
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// drawPanel draws one scenario's metric against clients at (x0, y0): x is
// log-scaled with a tick at each client count measured, y is linear from 0.
func drawPanel(b *bytes.Buffer, inputs []chartInput, scenario string, x0, y0 int, title, unit, id string, metric func(result) float64) {
	var clients []int
	maxY := 0.0
	for _, in := range inputs {
		for _, r := range in.Results {
			if r.Scenario == scenario {
				clients = append(clients, r.Clients)
				maxY = math.Max(maxY, metric(r))
			}
		}
	}
	slices.Sort(clients)
	clients = slices.Compact(clients)
	left, right := float64(x0+plotLeft), float64(x0+panelW-plotRight)
	top, bottom := float64(y0+plotTop), float64(y0+panelH-plotBottom)
	lo, hi := math.Log(float64(clients[0])), math.Log(float64(clients[len(clients)-1]))
	xOf := func(c int) float64 {
		if hi == lo {
			return (left + right) / 2
		}
		return left + inset + (math.Log(float64(c))-lo)/(hi-lo)*(right-left-2*inset)
	}
	step, yTop := niceScale(maxY, 5)
	yOf := func(v float64) float64 { return bottom - v/yTop*(bottom-top) }

	fmt.Fprintf(b, "<g class=\"panel\" id=\"%s-%s\">\n", esc(scenario), id)
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" font-size=\"13\"><tspan font-weight=\"bold\">%s</tspan> — %s</text>\n", x0, y0+16, esc(scenario), title)
	fmt.Fprintf(b, "<rect class=\"plot\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"none\" stroke=\"#999999\"/>\n",
		num(left), num(top), num(right-left), num(bottom-top))
	for i := 0; float64(i)*step <= yTop*(1+1e-9); i++ {
		v := float64(i) * step
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#e5e5e5\"/><text class=\"ytick\" x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>\n",
			num(left), num(yOf(v)), num(right), num(yOf(v)), num(left-5), num(yOf(v)+4), tickLabel(v, step))
	}
	lastLabel := math.Inf(-1)
	for _, c := range clients {
		x := xOf(c)
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#999999\"/>", num(x), num(bottom), num(x), num(bottom+4))
		if x-lastLabel >= 22 { // crowded counts keep their tick, not their label
			fmt.Fprintf(b, "<text class=\"xtick\" x=\"%s\" y=\"%s\" text-anchor=\"middle\">%d</text>", num(x), num(bottom+16), c)
			lastLabel = x
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "<text class=\"xlabel\" x=\"%s\" y=\"%s\" text-anchor=\"middle\">clients (log scale)</text>\n", num((left+right)/2), num(bottom+34))
	fmt.Fprintf(b, "<text class=\"ylabel\" x=\"%d\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 %d %s)\">%s</text>\n",
		x0+10, num((top+bottom)/2), x0+10, num((top+bottom)/2), unit)
	for i, in := range inputs {
		var rs []result
		for _, r := range in.Results {
			if r.Scenario == scenario {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		slices.SortStableFunc(rs, func(a, b result) int { return a.Clients - b.Clients })
		color, label := palette[i%len(palette)], esc(in.name())
		points := make([]string, len(rs))
		for j, r := range rs {
			points[j] = num(xOf(r.Clients)) + "," + num(yOf(metric(r)))
		}
		fmt.Fprintf(b, "<polyline class=\"series\" data-label=\"%s\" points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n",
			label, strings.Join(points, " "), color)
		for _, r := range rs {
			fmt.Fprintf(b, "<circle class=\"point\" data-label=\"%s\" cx=\"%s\" cy=\"%s\" r=\"3\" fill=\"%s\"><title>%s: %d clients, %s</title></circle>\n",
				label, num(xOf(r.Clients)), num(yOf(metric(r))), color, label, r.Clients, strconv.FormatFloat(metric(r), 'f', 1, 64))
		}
	}
	b.WriteString("</g>\n")
}
