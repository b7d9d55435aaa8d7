package twilio_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/callledger/callledger/twilio"
)

// signatureVector is one entry of testdata/signature-vectors.json.
type signatureVector struct {
	Source       string      `json:"source"`
	Test         string      `json:"test"`
	Token        string      `json:"token"`
	PublicURL    string      `json:"public_url"`
	RequestURI   string      `json:"request_uri"`
	Params       [][2]string `json:"params"`
	JSONBody     *string     `json:"json_body"`
	Signature    string      `json:"signature"`
	SignsThisURL bool        `json:"signs_this_url"`
}

// body is the vector's request body: its JSON, or its parameters
// form-encoded in the order given.
func (v signatureVector) body() []byte {
	if v.JSONBody != nil {
		return []byte(*v.JSONBody)
	}
	settings := make([]string, 0, len(v.Params))
	for _, p := range v.Params {
		settings = append(settings, url.QueryEscape(p[0])+"="+url.QueryEscape(p[1]))
	}
	return []byte(strings.Join(settings, "&"))
}

func loadSignatureVectors(t *testing.T) []signatureVector {
	t.Helper()
	raw, err := os.ReadFile("testdata/signature-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		About   string            `json:"about"`
		Sources map[string]string `json:"sources"`
		Vectors []signatureVector `json:"vectors"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields() // a misspelt field would test nothing
	if err := dec.Decode(&file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range file.Vectors {
		if !strings.HasPrefix(file.Sources[v.Source], "https://github.com/twilio/") {
			t.Fatalf("vector %q: source %q has no URL", v.Test, v.Source)
		}
	}
	return file.Vectors
}

// TestPublishedSignatureVectors checks Verify, Sign and the reference
// against the test vectors of twilio-python and twilio-node, among them
// their repeated parameters: every distinct value signed, sorted.
func TestPublishedSignatureVectors(t *testing.T) {
	t.Parallel()
	for _, vec := range loadSignatureVectors(t) {
		t.Run(vec.Source+"/"+vec.Test, func(t *testing.T) {
			t.Parallel()
			body := vec.body()
			v := mustVerifier(t, vec.PublicURL, vec.Token)
			signed := v.SignedURL(vec.RequestURI)
			if err := v.Verify(vec.RequestURI, body, vec.Signature); err != nil {
				t.Errorf("Verify = %v", err)
			}
			if !refVerify(refRing{def: []string{vec.Token}}, signed, body, vec.Signature) {
				t.Error("the reference refuses the vector")
			}
			if got := twilio.Sign(vec.Token, signed, body); (got == vec.Signature) != vec.SignsThisURL {
				t.Errorf("Sign = %q, vector %q (signed over this URL: %v)", got, vec.Signature, vec.SignsThisURL)
			}
			if vec.JSONBody != nil {
				if hash := (&url.URL{RawQuery: strings.SplitN(vec.RequestURI, "?", 2)[1]}).Query().Get("bodySHA256"); hash != twilio.BodySHA256(body) {
					t.Errorf("bodySHA256 %s, BodySHA256 = %s", hash, twilio.BodySHA256(body))
				}
				if err := v.Verify(vec.RequestURI, append(body, ' '), vec.Signature); !errors.Is(err, twilio.ErrSignatureInvalid) {
					t.Errorf("Verify(body changed) = %v, want ErrSignatureInvalid", err)
				}
				return
			}
			// twilio-go signs first values only: it agrees where no name
			// has two different values, and refuses the others.
			if agree := rulesAgree(signed, body); twilioGo(vec.Token, signed, body, vec.Signature) != agree {
				t.Errorf("twilio-go accepts=%v, want %v", !agree, agree)
			}
			// Any other value of a signed name is a forgery.
			forged := string(body) + "&" + url.QueryEscape(vec.Params[0][0]) + "=forged"
			if err := v.Verify(vec.RequestURI, []byte(forged), vec.Signature); !errors.Is(err, twilio.ErrSignatureInvalid) {
				t.Errorf("Verify(%s) = %v, want ErrSignatureInvalid", forged, err)
			}
		})
	}
}

// TestRepeatedParameterForgery: a captured callback with another value of
// one of its parameters appended verified under twilio-go's first-value
// reading, and was stored as a new event. Twilio signs every value.
func TestRepeatedParameterForgery(t *testing.T) {
	t.Parallel()
	reqs, _ := loadCorpus(t)
	v := mustVerifier(t, corpusPublicURL, corpusToken)
	var ringing, completed *capture
	for i, r := range reqs {
		if r.Method != "POST" || r.ExpectHTTP == 403 || r.Kind != "status" {
			continue
		}
		form, err := url.ParseQuery(r.Body)
		if err != nil {
			continue
		}
		switch form.Get("CallStatus") {
		case "ringing":
			ringing = &reqs[i]
		case "completed":
			completed = &reqs[i]
		}
	}
	if ringing == nil || completed == nil {
		t.Fatal("the corpus has no ringing or no completed status callback")
	}
	for _, tt := range []struct {
		name string
		r    *capture
		body string
		want error
	}{
		{"captured", ringing, ringing.Body, nil},
		{"another value appended", ringing, ringing.Body + "&CallStatus=completed", twilio.ErrSignatureInvalid},
		{"another value prepended", ringing, "CallStatus=completed&" + ringing.Body, twilio.ErrSignatureInvalid},
		{"another name appended", ringing, ringing.Body + "&Forged=1", twilio.ErrSignatureInvalid},
		// Twilio signs each distinct value once (as twilio-python and
		// twilio-node check), so a value sent twice signs as once.
		{"the same value appended", completed, completed.Body + "&CallStatus=completed", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sig := tt.r.Headers["X-Twilio-Signature"]
			err := v.Verify(tt.r.URI(), []byte(tt.body), sig)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
			if ref := refVerify(refRing{def: []string{corpusToken}}, v.SignedURL(tt.r.URI()), []byte(tt.body), sig); ref != (tt.want == nil) {
				t.Errorf("the reference says %v", ref)
			}
		})
	}
	// The forgery twilio-go's reading lets through.
	if !twilioGo(corpusToken, v.SignedURL(ringing.URI()), []byte(ringing.Body+"&CallStatus=completed"), ringing.Headers["X-Twilio-Signature"]) {
		t.Error("twilio-go refuses the appended value: the forgery this test is about no longer exists there")
	}
}
