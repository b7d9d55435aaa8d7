// Package realcorpus loads the corpus of Twilio Voice webhook payloads that
// other people wrote or captured (testdata/twilio-real, see its README), so
// that tests can replay requests callledger did not generate itself.
package realcorpus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// The kinds of payload, each the callback Twilio sends for it.
const (
	KindStatus        = "status"        // call status callback
	KindDial          = "dial"          // <Dial> action callback
	KindRecording     = "recording"     // recording status callback
	KindTranscription = "transcription" // transcription callback
	KindAMD           = "amd"           // asynchronous answering-machine detection callback
	KindConference    = "conference"    // conference status callback
	KindEvents        = "events"        // Event Streams delivery (CloudEvents)
)

// routes maps each kind to the route of callledger's webhook service it is
// replayed on.
var routes = map[string]string{
	KindStatus:        "/twilio/voice/status",
	KindDial:          "/twilio/voice/dial",
	KindRecording:     "/twilio/voice/recording",
	KindTranscription: "/twilio/voice/recording",
	KindAMD:           "/twilio/voice/amd",
	KindConference:    "/twilio/voice/conference",
	KindEvents:        "/twilio/events",
}

// RouteOf returns the route payloads of kind are replayed on, and whether
// kind is known.
func RouteOf(kind string) (string, bool) {
	r, ok := routes[kind]
	return r, ok
}

// Param is one form parameter, as published.
type Param struct {
	Name  string
	Value string
}

// UnmarshalJSON reads a parameter written as a [name, value] array.
func (p *Param) UnmarshalJSON(b []byte) error {
	var pair []string
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("parameter: %w", err)
	}
	if len(pair) != 2 {
		return fmt.Errorf("parameter: %d elements, want [name, value]", len(pair))
	}
	p.Name, p.Value = pair[0], pair[1]
	return nil
}

// MarshalJSON writes the parameter as a [name, value] array.
func (p Param) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]string{p.Name, p.Value})
}

// Payload is one published webhook request.
type Payload struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Route       string `json:"route"`
	Method      string `json:"method"`
	ContentType string `json:"content_type"`
	// Params are a form-encoded callback's parameters in published order
	// (a GET sends them as the query). Nil for Event Streams.
	Params []Param `json:"params,omitempty"`
	// Raw is the encoded form as published, when the source shows it
	// encoded: replaying it keeps the source's spelling (+ or %20, order,
	// duplicates, unencoded characters).
	Raw string `json:"raw,omitempty"`
	// Body is the raw JSON text of an Event Streams delivery.
	Body    string `json:"body,omitempty"`
	Source  string `json:"source"`
	License string `json:"license"`
	Notes   string `json:"notes"`
}

// Dir is the corpus directory, found relative to this source file so tests
// of any package can load it.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "twilio-real")
}

// Path is the corpus file.
func Path() string { return filepath.Join(Dir(), "payloads.jsonl") }

// Load reads and validates the corpus file at path.
func Load(path string) ([]Payload, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open real-world corpus: %w", err)
	}
	defer f.Close()
	ps, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ps, nil
}

// maxLine bounds one JSON line (the longest entry is a few kilobytes).
const maxLine = 1 << 20

// Parse reads one JSON object per line and validates each payload and the
// uniqueness of their IDs. Blank lines are not allowed: every line is an
// entry.
func Parse(r io.Reader) ([]Payload, error) {
	var out []Payload
	seen := make(map[string]int)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for line := 1; sc.Scan(); line++ {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var p Payload
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("line %d: more than one JSON value", line)
		}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if first, dup := seen[p.ID]; dup {
			return nil, fmt.Errorf("line %d: id %q already used on line %d", line, p.ID, first)
		}
		seen[p.ID] = line
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return out, nil
}

// Validate checks one payload: required fields, a known kind on its route,
// a method Twilio uses, and a form (params, with raw agreeing) or a JSON
// body, never both.
func (p *Payload) Validate() error {
	var errs []error
	if p.ID == "" {
		errs = append(errs, errors.New("no id"))
	}
	if p.Source == "" {
		errs = append(errs, errors.New("no source"))
	}
	route, known := routes[p.Kind]
	switch {
	case !known:
		errs = append(errs, fmt.Errorf("unknown kind %q", p.Kind))
	case p.Route != route:
		errs = append(errs, fmt.Errorf("kind %q belongs on %s, not %q", p.Kind, route, p.Route))
	}
	if p.Method != http.MethodPost && p.Method != http.MethodGet {
		errs = append(errs, fmt.Errorf("method %q is neither POST nor GET", p.Method))
	}
	if p.Kind == KindEvents {
		errs = append(errs, p.validateBody()...)
	} else {
		errs = append(errs, p.validateForm()...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("payload %q: %w", p.ID, err)
	}
	return nil
}

func (p *Payload) validateBody() []error {
	var errs []error
	if p.Params != nil || p.Raw != "" {
		errs = append(errs, errors.New("an Event Streams delivery has a body, not params"))
	}
	if p.Method != http.MethodPost {
		errs = append(errs, errors.New("an Event Streams delivery is a POST"))
	}
	if !strings.HasPrefix(p.ContentType, "application/json") {
		errs = append(errs, fmt.Errorf("content type %q is not JSON", p.ContentType))
	}
	if !json.Valid([]byte(p.Body)) {
		errs = append(errs, errors.New("body is not JSON"))
	}
	return errs
}

func (p *Payload) validateForm() []error {
	var errs []error
	if p.Body != "" {
		errs = append(errs, errors.New("a form callback has params, not a body"))
	}
	if len(p.Params) == 0 {
		errs = append(errs, errors.New("no params"))
	}
	if !strings.HasPrefix(p.ContentType, "application/x-www-form-urlencoded") {
		errs = append(errs, fmt.Errorf("content type %q is not a form", p.ContentType))
	}
	for i, q := range p.Params {
		if q.Name == "" {
			errs = append(errs, fmt.Errorf("param %d has no name", i))
		}
	}
	if p.Raw != "" {
		decoded, err := ParseForm(p.Raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("raw: %w", err))
		case !equalParams(decoded, p.Params):
			errs = append(errs, errors.New("raw does not decode to params"))
		}
	}
	return errs
}

// Encode returns the form to send: Raw when the source published it
// encoded, else the params encoded in order.
func (p *Payload) Encode() string {
	if p.Raw != "" {
		return p.Raw
	}
	var b strings.Builder
	for i, q := range p.Params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(q.Name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(q.Value))
	}
	return b.String()
}

// ParseForm decodes a form as url.ParseQuery does, keeping the order of
// the parameters (and of repeated names), which url.Values loses.
func ParseForm(raw string) ([]Param, error) {
	var out []Param
	for raw != "" {
		var field string
		field, raw, _ = strings.Cut(raw, "&")
		if field == "" {
			continue
		}
		name, value, _ := strings.Cut(field, "=")
		n, err := url.QueryUnescape(name)
		if err != nil {
			return nil, fmt.Errorf("name %q: %w", name, err)
		}
		v, err := url.QueryUnescape(value)
		if err != nil {
			return nil, fmt.Errorf("value of %q: %w", n, err)
		}
		out = append(out, Param{Name: n, Value: v})
	}
	return out, nil
}

func equalParams(a, b []Param) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
