package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/coding"
)

// MaxBodyBytes is the largest request body accepted (SPEC §5).
const MaxBodyBytes = 64 << 10

// maxJSONDepth bounds nesting in request bodies; authd's are flat.
const maxJSONDepth = 8

func invalid(field, message string) error {
	return &authd.Error{Code: authd.EInvalid, Message: "The request body is invalid.",
		Fields: []authd.FieldError{{Field: field, Message: message}}}
}

// invalidParam is invalid for a query parameter or a header.
func invalidParam(field, message string) error {
	return &authd.Error{Code: authd.EInvalid, Message: "A query parameter or header is invalid.",
		Fields: []authd.FieldError{{Field: field, Message: message}}}
}

// checkQuery refuses a malformed query string, a parameter the route does
// not take, and one given more than once: a filter misspelt or lost (a bad
// escape, a semicolon, which url.Values silently drops) would widen a
// listing, and the API reads one value of each, which must not be left to
// chance. params are the route's parameters.
func checkQuery(raw string, params []string) error {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return invalidParam("query", "is malformed: "+err.Error())
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		switch {
		case slices.Contains(params, name):
			if len(q[name]) > 1 {
				return invalidParam(name, "must be given once")
			}
		case len(params) == 0:
			return invalidParam(name, "is not a parameter: this route takes none")
		default:
			return invalidParam(name, "is not a parameter of this route, which takes "+strings.Join(params, ", "))
		}
	}
	return nil
}

// decodeOptional reads a JSON body into dst, or nothing when the body is
// empty, whatever its Content-Type (many clients send theirs with no body)
// or framing (no length, as chunks or HTTP/2 may have).
func decodeOptional(w http.ResponseWriter, r *http.Request, dst any) error {
	if r.ContentLength == 0 {
		return nil
	}
	if r.ContentLength < 0 { // read it to see
		body, err := readLimited(w, r)
		if err != nil {
			return err
		}
		if len(body) == 0 {
			return nil
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return decodeJSON(w, r, dst)
}

// noFields reads the body of a route that takes none: nothing, or an empty
// JSON object. A field sent there would be ignored, and it may carry what
// its sender meant (a reason for an unlock, a logout's scope).
func noFields(w http.ResponseWriter, r *http.Request) error {
	return decodeOptional(w, r, &struct{}{})
}

// fieldless is h behind noFields, for a route without a body.
func fieldless(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := noFields(w, r); err != nil {
			return err
		}
		return h(w, r)
	}
}

// fieldlessAuthed is fieldless for an authenticated route: the token is
// checked first.
func fieldlessAuthed(h authedFunc) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, a *authd.AccessClaims) error {
		if err := noFields(w, r); err != nil {
			return err
		}
		return h(w, r, a)
	}
}

// readLimited reads the body, at most MaxBodyBytes of it; one declared
// larger is refused before it is read, rather than waited for.
func readLimited(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := declaredTooLarge(w, r); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		// Closed after the answer, as declaredTooLarge's: the wrapped
		// writer hides from MaxBytesReader the way it would say so.
		w.Header().Set("Connection", "close")
		return nil, errTooLarge
	}
	if err != nil {
		return nil, &authd.Error{Code: authd.EInvalid, Message: "The request body could not be read.", Err: err}
	}
	return body, nil
}

var errTooLarge = &authd.Error{Code: authd.ETooLarge, Message: "The body is larger than 64 KiB."}

// declaredTooLarge refuses a request whose Content-Length is past
// MaxBodyBytes, before anything else is checked (every API route, addRoute)
// or read: its connection is closed after the answer, since net/http would
// otherwise read the unread body (up to 256 KiB) before answering, waiting
// for a client that sends less than it declared.
func declaredTooLarge(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength <= MaxBodyBytes {
		return nil
	}
	w.Header().Set("Connection", "close")
	return errTooLarge
}

// readBody reads a bounded body of the given media type.
func readBody(w http.ResponseWriter, r *http.Request, mediaType string) ([]byte, error) {
	if coding.Encoded(r.Header) {
		return nil, &authd.Error{Code: authd.EUnsupportedMedia,
			Message: "Content-Encoding is not supported: send the body uncompressed."}
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != mediaType || (params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		return nil, &authd.Error{Code: authd.EUnsupportedMedia,
			Message: fmt.Sprintf("Send the body as %s; charset=utf-8.", mediaType)}
	}
	body, err := readLimited(w, r)
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return nil, invalid("", "must not contain NUL bytes")
	}
	return body, nil
}

// decodeJSON reads a request body that must be one JSON object whose fields
// are known to dst and of the right types: no duplicate key, no trailing
// data, no NUL character, nothing that is not UTF-8.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	body, err := readBody(w, r, "application/json")
	if err != nil {
		return err
	}
	if err := checkJSON(body, knownFields(dst)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return invalid(jsonPath(dst, typeErr.Field), "must be "+expected(dst, typeErr))
		}
		if err := misfit(body, dst); err != nil {
			return err
		}
		return invalid("", "must be a JSON object of the documented fields")
	}
	return nil
}

// jsonPath is the path of a type error's field as the client wrote it:
// without the Go names of the structs dst embeds (stepUpIn.code is code).
func jsonPath(dst any, field string) string {
	t := reflect.TypeOf(dst).Elem()
	for {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return field
		}
		name, rest, ok := strings.Cut(field, ".")
		f, found := t.FieldByName(name)
		if !ok || !found || !f.Anonymous {
			return field
		}
		field, t = rest, f.Type
	}
}

// expected names what the field of dst a type error is about takes: "a
// boolean", "an array", or "an array of strings" when an element was wrong.
func expected(dst any, e *json.UnmarshalTypeError) string {
	for _, f := range reflect.VisibleFields(reflect.TypeOf(dst).Elem()) {
		t := f.Type
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if jsonName(f) == jsonPath(dst, e.Field) && t.Kind() == reflect.Slice && e.Type.Kind() != reflect.Slice {
			return "an array of " + jsonType(t.Elem()) + "s"
		}
	}
	return article(jsonType(e.Type))
}

// misfit names the field of body that dst's field of the same name cannot
// take, for a decoding error that names none: a type's own UnmarshalJSON
// (time.Time's, say) returns its error as it is. Nil when none is found.
func misfit(body []byte, dst any) error {
	var raw map[string]json.RawMessage
	if json.Unmarshal(body, &raw) != nil {
		return nil
	}
	for _, f := range reflect.VisibleFields(reflect.TypeOf(dst).Elem()) {
		value, ok := raw[jsonName(f)]
		if !ok || f.Anonymous || jsonName(f) == "" || jsonName(f) == "-" {
			continue
		}
		if json.Unmarshal(value, reflect.New(f.Type).Interface()) == nil {
			continue
		}
		if t := f.Type; t == reflect.TypeFor[time.Time]() || t == reflect.TypeFor[*time.Time]() {
			return invalid(jsonName(f), rfc3339)
		}
		return invalid(jsonName(f), "has the wrong type or format")
	}
	return nil
}

// rfc3339 is the message for a time that does not parse.
const rfc3339 = "must be an RFC 3339 time such as 2026-11-27T09:00:00Z"

// article puts "a" or "an" before a JSON type's name.
func article(name string) string {
	if strings.ContainsRune("aeiou", rune(name[0])) {
		return "an " + name
	}
	return "a " + name
}

// jsonType names the JSON type that decodes into t.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch k := t.Kind(); {
	case k == reflect.String:
		return "string"
	case k == reflect.Bool:
		return "boolean"
	case k >= reflect.Int && k <= reflect.Float64:
		return "number"
	case k == reflect.Slice || k == reflect.Array:
		return "array"
	default:
		return "object"
	}
}

// knownFields returns the JSON names of the fields of the struct dst points
// to, those of embedded structs included (as encoding/json promotes them).
func knownFields(dst any) map[string]bool {
	typ := reflect.TypeOf(dst).Elem()
	if known, ok := fieldsOf.Load(typ); ok {
		return known.(map[string]bool)
	}
	out := map[string]bool{}
	for _, f := range reflect.VisibleFields(typ) {
		if name := jsonName(f); name != "" && name != "-" && !f.Anonymous {
			out[name] = true
		}
	}
	fieldsOf.Store(typ, out)
	return out
}

// jsonName is the name of f in JSON: its tag's, "-" for none, "" for the
// Go name (which no request type uses).
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

// fieldsOf remembers knownFields per request type (a handful, fixed at
// build time): every request body is checked against them. The maps are
// only read once stored.
var fieldsOf sync.Map // reflect.Type → map[string]bool

// checkJSON walks body's tokens: exactly one object with only known keys,
// keys unique at every level, no string holding NUL, nesting bounded,
// nothing after it.
func checkJSON(body []byte, known map[string]bool) error {
	// The decoder would turn bytes that are not UTF-8, and escaped lone
	// surrogates, into U+FFFD: refused rather than stored as such (a U+FFFD
	// sent as itself is a character like any other).
	if !utf8.Valid(body) || loneSurrogate(body) {
		return invalid("", "must be valid UTF-8, without escaped lone surrogates")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return invalid("", "must be a JSON object")
	}
	if err := checkObject(dec, "", 1, known); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("", "must be one JSON object with nothing after it")
	}
	return nil
}

// loneSurrogate reports whether body escapes half of a UTF-16 surrogate
// pair without the other half (\ud800 alone, or \udc00 first). Outside
// strings a backslash is not JSON at all, which the decoder refuses.
func loneSurrogate(body []byte) bool {
	high := false // the escape just read was a high surrogate
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' || i+1 >= len(body) {
			if high {
				return true
			}
			continue
		}
		if body[i+1] != 'u' || i+6 > len(body) {
			if high {
				return true
			}
			i++ // an escaped character: \\ must not start an escape
			continue
		}
		r, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 16)
		i += 5
		switch {
		case err != nil:
			return false // not JSON: the decoder refuses it
		case r >= 0xD800 && r < 0xDC00:
			if high {
				return true
			}
			high = true
		case r >= 0xDC00 && r < 0xE000:
			if !high {
				return true
			}
			high = false
		default:
			if high {
				return true
			}
		}
	}
	return high
}

func checkObject(dec *json.Decoder, path string, depth int, known map[string]bool) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalid(path, "is not valid JSON")
		}
		key := tok.(string)
		field := key
		if path != "" {
			field = path + "." + key
		}
		if known != nil && !known[key] {
			return invalid(field, "is not a known field")
		}
		if seen[key] {
			return invalid(field, "appears twice")
		}
		seen[key] = true
		if err := checkValue(dec, field, depth); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return invalid(path, "is not valid JSON")
	}
	return nil
}

func checkValue(dec *json.Decoder, field string, depth int) error {
	if depth > maxJSONDepth {
		return invalid(field, "is nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return invalid(field, "is not valid JSON")
	}
	switch t := tok.(type) {
	case string:
		if strings.ContainsRune(t, 0) {
			return invalid(field, "must not contain NUL characters")
		}

	case json.Delim:
		switch t {
		case '{':
			return checkObject(dec, field, depth+1, nil)
		case '[':
			for dec.More() {
				if err := checkValue(dec, field, depth+1); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return invalid(field, "is not valid JSON")
			}
		}
	}
	return nil
}

// required returns a validation error naming the first empty field.
func required(fields ...string) error {
	var errs []authd.FieldError
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == "" {
			errs = append(errs, authd.FieldError{Field: fields[i], Message: "is required"})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &authd.Error{Code: authd.EInvalid, Message: "The request body is invalid.", Fields: errs}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
