package server_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/residue"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/twilio"
)

// postStatus sends form, signed, to srv's status callback route and
// returns the body sent and the position of what it stored.
func postStatus(t *testing.T, srv *server.Server, form url.Values) (string, uint64) {
	t.Helper()
	resp := sendStatus(t, srv, form)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("webhook: HTTP %d", resp.StatusCode)
	}
	pos, err := strconv.ParseUint(resp.Header.Get("Callledger-Position"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return form.Encode(), pos
}

// sendStatus sends form, signed, to srv's status callback route, and
// returns the answer (its body closed).
func sendStatus(t *testing.T, srv *server.Server, form url.Values) *http.Response {
	t.Helper()
	body := form.Encode()
	path := twilio.KindStatus.Path()
	req, err := http.NewRequest(http.MethodPost, "http://"+srv.Addrs().HTTP+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilio.Sign(token, publicURL+path, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// callerForm is the form of an inbound call's status callback naming its
// parties.
func callerForm(sid, status, from, to, callerName string) url.Values {
	return url.Values{
		"CallSid": {sid}, "AccountSid": {"AC0123456789abcdef0123456789abcdef"}, "CallStatus": {status},
		"Direction": {"inbound"}, "From": {from}, "To": {to}, "Caller": {from}, "Called": {to},
		"CallerName": {callerName}, "ApiVersion": {"2010-04-01"},
	}
}

// statusForm sends a signed status callback of sid and returns its body.
func statusForm(t *testing.T, srv *server.Server, sid, status, from, to, callerName string) string {
	t.Helper()
	form := callerForm(sid, status, from, to, callerName)
	if status == "completed" {
		form.Set("CallDuration", "42")
		form.Set("RecordingSid", "RE"+sid[2:])
		form.Set("RecordingUrl", "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE"+sid[2:])
	}
	body, _ := postStatus(t, srv, form)
	return body
}

// TestEraseLeavesNoResidue is the proof of docs/PRIVACY.md §9: after
// callledger erase --number X on a sealing server, no file under the data
// directory (ledger, key store, read model, journal: raw bytes and every
// SST's decompressed keys and values) holds X in any encoding Twilio uses,
// the caller's name, the recording's URL or the raw requests; the calls
// stay, redacted. The control: a call of another number, not erased, is
// found by the same search.
func TestEraseLeavesNoResidue(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Privacy: server.Privacy{KEKFile: writeKEK(t, 0o600)}}
	srv, stop := start(t, cfg)
	const (
		sid, kept        = "CA5eb1ed0000000000000000000000e5a5", "CA5eb1ed0000000000000000000000cee9"
		from, to, caller = "+15555550123", "+15555550187", "Zebulon Quuxley"
		other            = "+15555550166"
	)
	var bodies []string
	for _, st := range []string{"ringing", "in-progress", "completed"} {
		bodies = append(bodies, statusForm(t, srv, sid, st, from, to, caller))
	}
	statusForm(t, srv, kept, "completed", other, "+15555550170", "Other Person")
	applied(t, srv)
	conn := dialLocal(t, srv)
	if c := getCall(t, conn, sid, 0).GetCall(); c.GetFrom() != from || len(c.GetRecordings()) != 1 || c.GetRecordings()[0].GetUrl() == "" {
		t.Fatalf("before the erasure: %v", c)
	}
	resp, err := callledgerv1.NewAdminServiceClient(conn).Erase(t.Context(), &callledgerv1.EraseRequest{Number: from})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCalls() != 1 || resp.GetCallSids()[0] != sid || resp.GetPlaintextEvents() != 0 {
		t.Fatalf("Erase = %v", resp)
	}
	c := getCall(t, conn, sid, resp.GetPosition()).GetCall()
	checkRedacted(t, c, nil)
	if c.GetStatus() != callledgerv1.CallStatus_CALL_STATUS_COMPLETED || c.GetDurationSeconds() != 42 {
		t.Errorf("the erased call lost its facts: %v", c)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	assertNoResidue(t, dir, "after the erasure", other, erasedCall(sid, from, to, caller, bodies)...)
}

// erasedCall is what must be in no file once call sid, from from to to
// with caller's name, is erased: the numbers in every encoding, the name,
// the recording's URL and the raw request bodies.
func erasedCall(sid, from, to, caller string, bodies []string) []residue.Needle {
	needles := append(residue.PhoneNumber(from), residue.PhoneNumber(to)...)
	needles = append(needles, residue.Bytes("caller name", []byte(caller)),
		residue.Bytes("recording URL", []byte("Recordings/RE"+sid[2:])))
	for i, b := range bodies {
		needles = append(needles, residue.Bytes("request body "+string(rune('1'+i)), []byte(b)))
	}
	return needles
}

// assertNoResidue fails the test for each needle found under dir, and
// when control, a number not erased, is not found: a search that finds
// nothing proves nothing.
func assertNoResidue(t *testing.T, dir, when, control string, needles ...residue.Needle) {
	t.Helper()
	hits, err := residue.Find(dir, needles...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		t.Errorf("%s: %v", when, h)
	}
	// The control, after the scrubs: what was not erased is found (in
	// the read model, which shows numbers in the clear).
	if hits, err := residue.Find(dir, residue.PhoneNumber(control)...); err != nil || len(hits) == 0 {
		t.Errorf("the number of the call not erased is not found (%v): the search proves nothing", err)
	}
}
