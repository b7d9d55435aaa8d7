// Package metrics is the Prometheus adapter of the server: the metrics an
// operator needs to see how late Twilio's callbacks arrive, how far the
// projections trail the log, and whether anything is refused. Each type
// here implements an observer interface that the package it watches
// defines (webhook.Observer, instrument.Observer, …), so those packages
// stay free of Prometheus. Nothing is registered globally: the caller
// passes the registry, and tests build one each.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callledger/callledger/twilio"
)

// Namespace prefixes every metric this package defines.
const Namespace = "callledger"

// DelayBuckets bound Twilio's delivery delay. Twilio's Timestamp has
// one-second resolution, so delays under a second are indistinguishable
// from zero; the alert threshold (5 s) is a bucket boundary.
var DelayBuckets = []float64{0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 30, 60, 120, 300}

// LatencyBuckets bound server-side latencies: acknowledgements and appends
// wait for an fsync, so they start around a millisecond.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Webhook counts and times the Twilio-facing HTTP routes. It implements
// webhook.Observer.
type Webhook struct {
	requests   *prometheus.CounterVec
	ack        *prometheus.HistogramVec
	delay      *prometheus.HistogramVec
	duplicates *prometheus.CounterVec
	signature  *prometheus.CounterVec
	quarantine *prometheus.CounterVec
}

// NewWebhook registers the webhook metrics with reg.
func NewWebhook(reg prometheus.Registerer) (*Webhook, error) {
	m := &Webhook{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "webhook", Name: "requests_total",
			Help: "HTTP requests by route and answer code (route \"other\" for unknown paths).",
		}, []string{"route", "code"}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "webhook", Name: "ack_seconds",
			Help:    "Time from receiving a webhook to answering it, by route; a 2xx waits for the fsync.",
			Buckets: LatencyBuckets,
		}, []string{"route"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "twilio", Name: "delivery_delay_seconds",
			Help:    "Twilio's delivery delay: server receipt time minus the Timestamp (or event time) Twilio reported, by callback kind. Negative delays (clock skew) count as zero.",
			Buckets: DelayBuckets,
		}, []string{"kind"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "webhook", Name: "duplicates_total",
			Help: "Events that were already in the ledger (Twilio retries), by callback kind.",
		}, []string{"kind"}),
		signature: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "webhook", Name: "signature_failures_total",
			Help: "Requests refused with 403 for a missing or invalid X-Twilio-Signature, by callback kind and account: " +
				"the configured AccountSid whose tokens did not sign it, \"default\" for the default tokens, " +
				"\"unlisted\" for an AccountSid that --twilio-accounts does not list (and the default tokens did not sign).",
		}, []string{"kind", "account"}),
		quarantine: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "webhook", Name: "quarantined_total",
			Help: "Signed events stored in a quarantine stream (no usable CallSid or unparseable), by callback kind.",
		}, []string{"kind"}),
	}
	if err := register(reg, m.requests, m.ack, m.delay, m.duplicates, m.signature, m.quarantine); err != nil {
		return nil, err
	}
	// Export the refusal counters at zero from the start, so that a rate
	// (and an alert on it) exists before the first refusal.
	for _, kind := range twilio.Kinds() {
		m.duplicates.WithLabelValues(string(kind))
		m.signature.WithLabelValues(string(kind), "default")
		m.signature.WithLabelValues(string(kind), "unlisted")
		m.quarantine.WithLabelValues(string(kind))
	}
	return m, nil
}

// Answered records one answered request.
func (m *Webhook) Answered(route string, code int, elapsed time.Duration) {
	m.requests.WithLabelValues(route, codeText(code)).Inc()
	m.ack.WithLabelValues(route).Observe(elapsed.Seconds())
}

// Delivered records Twilio's delivery delay of one event.
func (m *Webhook) Delivered(kind string, delay time.Duration) {
	m.delay.WithLabelValues(kind).Observe(max(delay, 0).Seconds())
}

// Duplicates records n events that were already stored.
func (m *Webhook) Duplicates(kind string, n int) { m.duplicates.WithLabelValues(kind).Add(float64(n)) }

// SignatureFailed records a request refused for its signature; account is
// a configured AccountSid, "default" or "unlisted", never a value of the
// request's (see webhook.Observer).
func (m *Webhook) SignatureFailed(kind, account string) {
	m.signature.WithLabelValues(kind, account).Inc()
}

// Quarantined records n events newly stored in a quarantine stream.
func (m *Webhook) Quarantined(kind string, n int) { m.quarantine.WithLabelValues(kind).Add(float64(n)) }

// codeText spells the common answer codes without allocating.
func codeText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 400:
		return "400"
	case 403:
		return "403"
	case 404:
		return "404"
	case 405:
		return "405"
	case 413:
		return "413"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}
