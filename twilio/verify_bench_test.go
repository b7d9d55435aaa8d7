package twilio_test

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/callledger/callledger/twilio"
)

// BenchmarkVerifyKeyring measures Verify on the typical status callback
// with a Keyring of 100 accounts, the request's among them: the cost of
// picking its tokens by AccountSid.
func BenchmarkVerifyKeyring(b *testing.B) {
	r := bySeq(b, typicalStatus)
	uri, body, sig := r.URI(), []byte(r.Body), r.Headers["X-Twilio-Signature"]
	form, err := url.ParseQuery(r.Body)
	if err != nil {
		b.Fatal(err)
	}
	accounts := []twilio.AccountTokens{{AccountSid: form.Get("AccountSid"), Tokens: []string{corpusToken}}}
	for i := range 99 {
		accounts = append(accounts, twilio.AccountTokens{AccountSid: fmt.Sprintf("AC%032x", i), Tokens: []string{fmt.Sprintf("token%d", i)}})
	}
	v, err := twilio.NewVerifierWithKeyring(corpusPublicURL, mustKeyring(b, []string{"default-token"}, accounts...))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if account, err := v.VerifyAccount(uri, body, sig); err != nil || account != form.Get("AccountSid") {
			b.Fatal(account, err)
		}
	}
}
