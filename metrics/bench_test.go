package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callledger/callledger/metrics"
)

// BenchmarkWebhookRequest is what the metrics add to one accepted status
// callback: an append timed, a delivery delay and the answer recorded.
func BenchmarkWebhookRequest(b *testing.B) {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewWebhook(reg)
	if err != nil {
		b.Fatal(err)
	}
	st, err := metrics.NewStore(reg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			st.Appended(1, 0, 3*time.Millisecond, nil)
			m.Delivered("status", 700*time.Millisecond)
			m.Answered("/twilio/voice/status", 204, 4*time.Millisecond)
		}
	})
}
