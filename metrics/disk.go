package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DiskState is a reading of the data directory's filesystem: its free
// bytes, the watermark below which appends are refused, and whether they
// are refused now.
type DiskState func() (free, minFree uint64, refusing bool)

// NewDisk registers the gauges of the embedded ledger's disk, read from
// state at each scrape.
func NewDisk(reg prometheus.Registerer, state DiskState) error {
	return register(reg,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "disk", Name: "free_bytes",
			Help: "Free bytes of the data directory's filesystem (available to the server), read every second.",
		}, func() float64 { f, _, _ := state(); return float64(f) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "disk", Name: "min_free_bytes",
			Help: "The watermark (--min-free-space): below it appends are refused.",
		}, func() float64 { _, m, _ := state(); return float64(m) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "disk", Name: "full",
			Help: "1 while appends are refused because the data directory's filesystem is below the watermark (webhooks get 503), else 0.",
		}, func() float64 {
			if _, _, r := state(); r {
				return 1
			}
			return 0
		}),
	)
}

// NewAppendWait registers the gauge of how long the oldest webhook append
// in flight has waited, read from wait at each scrape: past
// --max-append-wait new webhooks get 503, and an alert on it fires before.
func NewAppendWait(reg prometheus.Registerer, wait func() time.Duration) error {
	return register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "webhook", Name: "oldest_append_wait_seconds",
		Help: "How long the oldest webhook append in flight has waited; 0 when none is. Past --max-append-wait new webhooks get 503.",
	}, func() float64 { return wait().Seconds() }))
}
