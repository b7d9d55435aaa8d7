// Package corpus loads the Twilio webhook capture corpus in testdata/twilio
// (see its README): the requests, the state each call must reach, and the
// SIDs only forged requests name. Tests of every layer replay it.
package corpus

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Request is one captured HTTP request.
type Request struct {
	Scenario    string            `json:"scenario"`
	Seq         int               `json:"seq"`
	Method      string            `json:"method"`
	Path        string            `json:"path"`
	Query       string            `json:"query"`
	ContentType string            `json:"content_type"`
	Headers     map[string]string `json:"headers"`
	Body        string            `json:"body"`
	ExpectHTTP  int               `json:"expect_http"`
	Tree        int               `json:"tree"`
	Kind        string            `json:"kind"`
	CallSid     string            `json:"call_sid"`
	DupOf       *int              `json:"dup_of"`
}

// URI is the request target as sent: path and raw query.
func (r Request) URI() string {
	if r.Query == "" {
		return r.Path
	}
	return r.Path + "?" + r.Query
}

// Expected is the final state of one call.
type Expected struct {
	CallSid         string   `json:"call_sid"`
	Status          string   `json:"status"`
	Terminal        bool     `json:"terminal"`
	Placeholder     bool     `json:"placeholder"`
	ParentCallSid   string   `json:"parent_call_sid"`
	ChildCallSids   []string `json:"child_call_sids"`
	RootCallSid     string   `json:"root_call_sid"`
	DurationSeconds *int64   `json:"duration_seconds"`
	Recordings      int      `json:"recordings"`
	OwnEvents       int      `json:"own_events"`
	Scenario        string   `json:"scenario"`
	Tree            int      `json:"tree"`
}

// Absent is a CallSid that only forged requests mention.
type Absent struct {
	CallSid  string `json:"call_sid"`
	Reason   string `json:"reason"`
	Scenario string `json:"scenario"`
	Tree     int    `json:"tree"`
}

// The signing parameters of the corpus.
const (
	Token     = "visible-test-token"
	PublicURL = "https://ledger.test"
)

// Dir is the corpus directory, found relative to this source file so tests
// of any package can load it.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "twilio")
}

// Requests loads requests.jsonl in delivery order.
func Requests() ([]Request, error) { return load[Request]("requests.jsonl") }

// ExpectedCalls loads expected.jsonl.
func ExpectedCalls() ([]Expected, error) { return load[Expected]("expected.jsonl") }

// AbsentCalls loads absent.jsonl.
func AbsentCalls() ([]Absent, error) { return load[Absent]("absent.jsonl") }

func load[T any](name string) ([]T, error) {
	path := filepath.Join(Dir(), name)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open corpus: %w", err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return out, nil
}
