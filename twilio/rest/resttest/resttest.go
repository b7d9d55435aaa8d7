// Package resttest is a fake of the part of Twilio's REST API callledger
// uses (fetch, list and update Call resources), for tests: an httptest
// server that speaks Twilio's wire format (form-encoded updates, JSON
// resources and pages, Twilio's error JSON), reached through a transport
// that rewrites https://api.twilio.com to it. It checks basic
// authentication against the accounts it was given, counts every request,
// and can be told to fail or hold requests.
package resttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callledger/callledger/twilio/rest"
)

// Call is a Call resource as the fake stores it; empty fields are left out
// of its JSON, as Twilio leaves them null.
type Call struct {
	Sid, AccountSid, ParentCallSid string
	Status                         string
	From, To, Direction            string
	AnsweredBy                     string
	// Duration in seconds, as Twilio's string; empty while unknown.
	Duration             string
	StartTime, EndTime   time.Time
	DateCreated, Updated time.Time
}

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Form   url.Values
	// User is the basic-auth user name (AccountSid or API key SID).
	User string
}

// Fault is an error answer the fake gives instead of the real one.
type Fault struct {
	Status int // HTTP status, e.g. 429, 503, 404
	Code   int // Twilio error code, e.g. 20429
}

// Fake is the fake REST API.
type Fake struct {
	srv      *httptest.Server
	accounts map[string]string // user → password

	mu       sync.Mutex
	calls    map[string]*Call
	requests []Request
	faults   map[string][]Fault // by CallSid, consumed in order
	hold     chan struct{}      // non-nil: updates wait for it to close
	arrived  chan Request       // updates, as they arrive
}

// New starts a fake that accepts the given accounts' credentials; it stops
// when the test ends.
func New(t testing.TB, accounts ...rest.Account) *Fake {
	t.Helper()
	f := &Fake{accounts: map[string]string{}, calls: map[string]*Call{}, faults: map[string][]Fault{}, arrived: make(chan Request, 1024)}
	for _, a := range accounts {
		if a.APIKeySid != "" {
			f.accounts[a.APIKeySid] = a.APIKeySecret
		} else {
			f.accounts[a.AccountSid] = a.AuthToken
		}
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.Release()
		f.srv.Close()
	})
	return f
}

// Transport sends every request, whatever its host, to the fake: give it
// to rest.Config.Transport.
func (f *Fake) Transport() http.RoundTripper {
	return rewrite{to: f.srv.URL, next: f.srv.Client().Transport}
}

type rewrite struct {
	to   string
	next http.RoundTripper
}

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	u, err := url.Parse(r.to)
	if err != nil {
		return nil, err
	}
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = u.Scheme, u.Host, u.Host
	return r.next.RoundTrip(req)
}

// Put stores (or replaces) a call.
func (f *Fake) Put(c Call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[c.Sid] = &c
}

// Fail makes the next requests about sid (fetch, update, or a list of its
// children) answer the given faults, one per request, in order.
func (f *Fake) Fail(sid string, faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[sid] = append(f.faults[sid], faults...)
}

// Hold makes updates wait, after they are counted and reported by Updates,
// until Release.
func (f *Fake) Hold() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hold == nil {
		f.hold = make(chan struct{})
	}
}

// Release lets held updates through.
func (f *Fake) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hold != nil {
		close(f.hold)
		f.hold = nil
	}
}

// Updates delivers every update request as it arrives.
func (f *Fake) Updates() <-chan Request { return f.arrived }

// Requests returns every request received so far.
func (f *Fake) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// Count returns how many requests were received for which match is true
// (nil: all).
func (f *Fake) Count(match func(Request) bool) int {
	n := 0
	for _, r := range f.Requests() {
		if match == nil || match(r) {
			n++
		}
	}
	return n
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if want, known := f.accounts[user]; !ok || !known || want != pass {
		writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "bad form")
		return
	}
	req := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Form: r.PostForm, User: user}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()

	// /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json or .../Calls.json
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/2010-04-01/Accounts/"), "/")
	if !strings.HasPrefix(r.URL.Path, "/2010-04-01/Accounts/") || len(parts) < 2 || parts[1] != "Calls" && parts[1] != "Calls.json" {
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	account := parts[0]
	switch {
	case len(parts) == 2 && parts[1] == "Calls.json" && r.Method == http.MethodGet:
		f.list(w, r, account)
	case len(parts) == 3 && strings.HasSuffix(parts[2], ".json"):
		sid := strings.TrimSuffix(parts[2], ".json")
		if f.fault(w, sid) {
			return
		}
		switch r.Method {
		case http.MethodGet:
			f.fetch(w, account, sid)
		case http.MethodPost:
			f.update(w, req, account, sid)
		default:
			writeError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
		}
	default:
		writeError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
	}
}

// fault answers the next fault queued for sid, if any.
func (f *Fake) fault(w http.ResponseWriter, sid string) bool {
	f.mu.Lock()
	q := f.faults[sid]
	if len(q) == 0 {
		f.mu.Unlock()
		return false
	}
	flt := q[0]
	f.faults[sid] = q[1:]
	f.mu.Unlock()
	if flt.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, flt.Status, flt.Code, http.StatusText(flt.Status))
	return true
}

func (f *Fake) lookup(account, sid string) (*Call, bool) {
	c, ok := f.calls[sid]
	if !ok || c.AccountSid != account {
		return nil, false
	}
	return c, true
}

func (f *Fake) fetch(w http.ResponseWriter, account, sid string) {
	f.mu.Lock()
	c, ok := f.lookup(account, sid)
	var body map[string]any
	if ok {
		body = c.resource()
	}
	f.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, 20404, "The requested resource /2010-04-01/Accounts/"+account+"/Calls/"+sid+".json was not found")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (f *Fake) list(w http.ResponseWriter, r *http.Request, account string) {
	parent := r.URL.Query().Get("ParentCallSid")
	if parent != "" && f.fault(w, parent) {
		return
	}
	f.mu.Lock()
	calls := []map[string]any{}
	for _, c := range f.calls {
		if c.AccountSid == account && (parent == "" || c.ParentCallSid == parent) {
			calls = append(calls, c.resource())
		}
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"calls": calls, "page": 0, "page_size": len(calls), "start": 0, "end": max(0, len(calls)-1),
		"first_page_uri": r.URL.RequestURI(), "next_page_uri": nil, "previous_page_uri": nil, "uri": r.URL.RequestURI(),
	})
}

// update applies Status=completed|canceled as Twilio does: completed ends
// an answered (or ringing) call, canceled only a queued or ringing one; a
// call already over answers 400 with error 21220.
func (f *Fake) update(w http.ResponseWriter, req Request, account, sid string) {
	select {
	case f.arrived <- req:
	default:
	}
	f.mu.Lock()
	hold := f.hold
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.lookup(account, sid)
	if !ok {
		writeError(w, http.StatusNotFound, 20404, "The requested resource /2010-04-01/Accounts/"+account+"/Calls/"+sid+".json was not found")
		return
	}
	status := req.Form.Get("Status")
	switch {
	case status != "completed" && status != "canceled":
		writeError(w, http.StatusBadRequest, 21218, "Invalid Status "+status)
		return
	case c.Status != "queued" && c.Status != "ringing" && c.Status != "in-progress",
		status == "canceled" && c.Status == "in-progress":
		writeError(w, http.StatusBadRequest, 21220, "Call is not in-progress. Cannot redirect.")
		return
	}
	now := time.Now().UTC()
	if c.Status == "in-progress" {
		c.Status, c.EndTime = "completed", now
		c.Duration = fmt.Sprint(int(now.Sub(c.StartTime).Seconds()))
	} else {
		c.Status, c.Duration = "canceled", "0"
	}
	c.Updated = now
	writeJSON(w, http.StatusOK, c.resource())
}

const rfc2822 = "Mon, 02 Jan 2006 15:04:05 -0700"

func (c *Call) resource() map[string]any {
	m := map[string]any{
		"sid": c.Sid, "account_sid": c.AccountSid, "status": c.Status, "api_version": "2010-04-01",
		"uri": "/2010-04-01/Accounts/" + c.AccountSid + "/Calls/" + c.Sid + ".json",
	}
	str := func(k, v string) {
		if v != "" {
			m[k] = v
		} else {
			m[k] = nil
		}
	}
	tm := func(k string, t time.Time) {
		if !t.IsZero() {
			m[k] = t.UTC().Format(rfc2822)
		} else {
			m[k] = nil
		}
	}
	str("parent_call_sid", c.ParentCallSid)
	str("from", c.From)
	str("to", c.To)
	str("direction", c.Direction)
	str("answered_by", c.AnsweredBy)
	str("duration", c.Duration)
	tm("start_time", c.StartTime)
	tm("end_time", c.EndTime)
	tm("date_created", c.DateCreated)
	tm("date_updated", c.Updated)
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers Twilio's error JSON.
func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{
		"code": code, "message": msg, "more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status,
	})
}
