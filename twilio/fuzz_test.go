package twilio_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callledger/callledger/twilio"
)

// How FuzzVerifyMatchesTwilioGo signs its request.
const (
	sigCorrect     = iota // as Twilio would
	sigCorrupted          // one bit of the correct MAC flipped
	sigPortVariant        // over the other URL twilio-go tries (port added or removed)
	sigGiven              // the fuzzer's own string
	sigModes
)

// FuzzVerifyMatchesTwilioGo asserts that Verify's verdict equals twilio-go's
// ValidateBody on the signed URL, for every URL url.Parse accepts (Verify's
// documented precondition).
func FuzzVerifyMatchesTwilioGo(f *testing.F) {
	var mu sync.Mutex
	verifiers := map[string]*twilio.Verifier{} // NewVerifier probes net/url once: cache
	f.Fuzz(func(t *testing.T, https bool, host, port, prefix, path, query string, withHash bool, body []byte, token string, mode uint8, given string) {
		scheme := "http"
		if https {
			scheme = "https"
		}
		base := scheme + "://" + host
		if port != "" {
			base += ":" + port
		}
		base += prefix
		mu.Lock()
		v, ok := verifiers[base+"\x00"+token]
		if !ok {
			var err error
			if v, err = twilio.NewVerifier(base, token); err != nil {
				mu.Unlock()
				return // not a configuration NewVerifier accepts
			}
			if len(verifiers) > 1000 {
				clear(verifiers)
			}
			verifiers[base+"\x00"+token] = v
		}
		mu.Unlock()

		uri := path
		if query != "" {
			uri += "?" + query
		}
		if withHash {
			sep := "?"
			if strings.Contains(uri, "?") {
				sep = "&"
			}
			uri += sep + "bodySHA256=" + twilio.BodySHA256(body)
		}
		signed := v.SignedURL(uri)
		if _, err := url.Parse(signed); err != nil {
			return // Verify's precondition
		}

		correct := refSign(token, signed, body)
		if _, err := url.ParseQuery(string(body)); err == nil {
			if got := twilio.Sign(token, signed, body); got != correct {
				t.Fatalf("Sign = %q, twilio-go computes %q", got, correct)
			}
		}
		var sig string
		switch mode % sigModes {
		case sigCorrect:
			sig = correct
		case sigCorrupted:
			raw, _ := base64.StdEncoding.DecodeString(correct)
			raw[int(mode)%len(raw)] ^= 1 << (mode % 8)
			sig = base64.StdEncoding.EncodeToString(raw)
		case sigPortVariant:
			alt := removePort(signed)
			if alt == signed {
				alt = addPort(signed)
			}
			sig = refSign(token, alt, body)
		case sigGiven:
			sig = given
		}

		err := v.Verify(uri, body, sig)
		want := twilioGo(token, signed, body, sig)
		if (err == nil) != want {
			t.Fatalf("Verify(%q, %q, %q) = %v; twilio-go ValidateBody(%q) = %v", uri, body, sig, err, signed, want)
		}
		switch {
		case err == nil:
		case sig == "" && !errors.Is(err, twilio.ErrSignatureMissing):
			t.Fatalf("Verify without signature = %v, want ErrSignatureMissing", err)
		case sig != "" && !errors.Is(err, twilio.ErrSignatureInvalid):
			t.Fatalf("Verify = %v, want ErrSignatureInvalid", err)
		}
	})
}

// addPort and removePort are twilio-go's (client/request_validator.go,
// v1.31.0, MIT), copied so that the port variant is built independently of
// the code under test.
func addPort(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	if len(parsed.Port()) != 0 {
		return u
	}
	if parsed.Scheme == "https" {
		return updatePort(u, 443)
	}
	return updatePort(u, 80)
}

func updatePort(u string, newPort int) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	var newHost string
	if len(parsed.Port()) == 0 {
		newHost = fmt.Sprintf("%s:%d", parsed.Host, newPort)
	} else {
		oldHost := strings.Split(parsed.Host, ":")[0]
		newHost = fmt.Sprintf("%s:%d", oldHost, newPort)
	}
	parsed.Host = newHost
	return parsed.String()
}

func removePort(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	if len(parsed.Port()) == 0 {
		return u
	}
	parsed.Host = strings.Split(parsed.Host, ":")[0]
	return parsed.String()
}

// FuzzParseForm asserts that the form parser agrees with url.ParseQuery on
// every name, every value and on failing, and that Verify signs the sorted
// first values twilio-go signs.
func FuzzParseForm(f *testing.F) {
	f.Fuzz(func(t *testing.T, q string) {
		want, wantErr := url.ParseQuery(q)
		got, err := twilio.ParseFormBytes([]byte(q))
		if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseForm(%q) = %v, %v; url.ParseQuery = %v, %v", q, got, err, want, wantErr)
		}
		if err != nil && !errors.Is(err, twilio.ErrMalformedForm) {
			t.Fatalf("ParseForm(%q) error %v is not ErrMalformedForm", q, err)
		}
		if wantErr == nil {
			gotS, errS := twilio.ParseFormString(q)
			if errS != nil || !reflect.DeepEqual(gotS, want) {
				t.Fatalf("ParseFormString(%q) = %v, %v; url.ParseQuery = %v", q, gotS, errS, want)
			}
			names := make([]string, 0, len(want))
			for k := range want {
				names = append(names, k)
			}
			sort.Strings(names)
			var signed strings.Builder
			for _, k := range names {
				signed.WriteString(k + want[k][0])
			}
			if got := twilio.SortedFirstValues([]byte(q)); got != signed.String() {
				t.Fatalf("SortedFirstValues(%q) = %q, want %q", q, got, signed.String())
			}
		}
		// The same text as a URL query: bodySHA256 as url.URL.Query().Get sees it.
		for _, name := range []string{"bodySHA256", firstName(q)} {
			u := &url.URL{RawQuery: q}
			v, found := twilio.QueryFirst(q, name)
			if wantV := u.Query().Get(name); v != wantV || found != u.Query().Has(name) {
				t.Fatalf("QueryFirst(%q, %q) = %q, %v; url.Values.Get = %q, Has = %v", q, name, v, found, wantV, u.Query().Has(name))
			}
		}
	})
}

// firstName is the unescaped name of q's first setting, or "".
func firstName(q string) string {
	k, _, _ := strings.Cut(q, "&")
	k, _, _ = strings.Cut(k, "=")
	name, err := url.QueryUnescape(k)
	if err != nil {
		return ""
	}
	return name
}

var fuzzKinds = []twilio.Kind{twilio.KindStatus, twilio.KindDial, twilio.KindRecording, twilio.KindEvents, "unknown-kind"}

// fuzzFormKinds are the kinds of the form-encoded callbacks.
var fuzzFormKinds = []twilio.Kind{twilio.KindStatus, twilio.KindDial, twilio.KindRecording, twilio.KindAMD, twilio.KindConference}

// FuzzDeriveForm asserts the invariants of Derive for any form callback:
// never a panic, at least one event, valid deterministic IDs, a call stream
// with a valid CallSid or the kind's quarantine.
func FuzzDeriveForm(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind uint8, get bool, query string, body []byte, header string) {
		k := fuzzFormKinds[int(kind)%len(fuzzFormKinds)]
		if kind >= 200 {
			k = fuzzKinds[4]
		}
		method := http.MethodPost
		if get {
			method = http.MethodGet
		}
		req := &twilio.Request{
			Method: method, URL: corpusPublicURL + "/twilio/voice/" + string(k) + "?" + query, RawQuery: query,
			Body: body, ReceivedAt: receivedAt, Header: http.Header{"X-Twilio-Signature": {header}, header: {"v"}, "Cookie": {"c"}},
		}
		ds := twilio.Derive(k, req)
		checkDerived(t, k, req, ds)
		for _, d := range ds {
			for _, h := range d.Event.GetRequest().GetHeaders() {
				if strings.EqualFold(h.GetName(), "Cookie") {
					t.Fatal("cookie stored")
				}
			}
		}
	})
}

// FuzzDeriveEvents asserts the same invariants for any Event Streams body.
func FuzzDeriveEvents(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		req := &twilio.Request{Method: http.MethodPost, URL: corpusPublicURL + "/twilio/events", Body: body, ReceivedAt: receivedAt}
		ds := twilio.Derive(twilio.KindEvents, req)
		checkDerived(t, twilio.KindEvents, req, ds)
		for i, d := range ds {
			if src := d.Event.GetSource().String(); src != "SOURCE_EVENT_STREAMS" && src != "SOURCE_VOICE_INSIGHTS" {
				t.Fatalf("event %d: source %v", i, d.Event.GetSource())
			}
			if d.Event.GetCallStatusReported() != nil && d.Event.GetCloudEvent().GetId() == "" {
				t.Fatalf("event %d: a status report without CloudEvent id", i)
			}
		}
	})
}

// FuzzParseTimestamp asserts that ParseTimestamp accepts whatever
// net/mail.ParseDate accepts, with the same instant, and that its own
// layout round-trips.
func FuzzParseTimestamp(f *testing.F) {
	const layout = "Mon, 2 Jan 2006 15:04:05 -0700"
	f.Fuzz(func(t *testing.T, s string) {
		got, err := twilio.ParseTimestamp(s)
		if err != nil && !errors.Is(err, twilio.ErrInvalidTimestamp) {
			t.Fatalf("ParseTimestamp(%q) error %v is not ErrInvalidTimestamp", s, err)
		}
		if m, merr := mail.ParseDate(s); merr == nil && (err != nil || !got.Equal(m)) {
			t.Fatalf("ParseTimestamp(%q) = %v, %v; net/mail says %v", s, got, err, m)
		}
		if l, lerr := time.Parse(layout, s); lerr == nil && (err != nil || !got.Equal(l)) {
			t.Fatalf("ParseTimestamp(%q) = %v, %v; the layout says %v", s, got, err, l)
		}
		if err != nil {
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseTimestamp(%q) in %v, want UTC", s, got.Location())
		}
		if y := got.Year(); y >= 0 && y <= 9999 {
			back, err := twilio.ParseTimestamp(got.Format(layout))
			if err != nil || !back.Equal(got) {
				t.Fatalf("ParseTimestamp(%q) = %v, which does not round-trip: %v, %v", s, got, back, err)
			}
		}
	})
}
