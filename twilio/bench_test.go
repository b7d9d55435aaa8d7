package twilio_test

import (
	"testing"

	"github.com/twilio/twilio-go/client"

	"github.com/callledger/callledger/twilio"
)

// typicalStatus is a completed outbound call's status callback from the
// corpus: 31 parameters, 1 KB, with SequenceNumber, CallDuration and
// SipResponseCode.
const typicalStatus = 1

// BenchmarkVerify compares Verify with twilio-go's ValidateBody on the same
// request; both accept it.
func BenchmarkVerify(b *testing.B) {
	r := bySeq(b, typicalStatus)
	uri, body, sig := r.URI(), []byte(r.Body), r.Headers["X-Twilio-Signature"]
	b.Run("callledger", func(b *testing.B) {
		v := mustVerifier(b, corpusPublicURL, corpusToken)
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if err := v.Verify(uri, body, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("twilio-go", func(b *testing.B) {
		rv := client.NewRequestValidator(corpusToken)
		url := corpusPublicURL + uri
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if !rv.ValidateBody(url, body, sig) {
				b.Fatal("rejected")
			}
		}
	})
}

// BenchmarkDeriveStatus measures the event derivation of the webhook hot
// path on the same status callback.
func BenchmarkDeriveStatus(b *testing.B) {
	req := requestOf(bySeq(b, typicalStatus))
	b.ReportAllocs()
	b.SetBytes(int64(len(req.Body)))
	for b.Loop() {
		if d := twilio.Derive(twilio.KindStatus, req); len(d) != 1 {
			b.Fatal(len(d))
		}
	}
}
