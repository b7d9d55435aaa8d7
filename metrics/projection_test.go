package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callledger/callledger/metrics"
)

type fixedCounts struct{}

func (fixedCounts) CallCounts() (map[string]int64, int64) {
	return map[string]int64{"completed": 7, "ringing": 2}, 2
}

func TestProjectionCollector(t *testing.T) {
	var lagErr error
	reg := prometheus.NewRegistry()
	_, err := metrics.NewProjection(reg, func(context.Context) (uint64, time.Duration, error) {
		return 42, 1500 * time.Millisecond, lagErr
	}, fixedCounts{})
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP callledger_active_calls Calls known and not ended (status set, not terminal).
# TYPE callledger_active_calls gauge
callledger_active_calls 2
# HELP callledger_calls Calls in the read model by status.
# TYPE callledger_calls gauge
callledger_calls{status="completed"} 7
callledger_calls{status="ringing"} 2
# HELP callledger_projection_lag_events Log positions the call-state projection has not applied yet (head minus checkpoint).
# TYPE callledger_projection_lag_events gauge
callledger_projection_lag_events 42
# HELP callledger_projection_lag_scrape_error 1 when the last scrape could not measure the projection lag.
# TYPE callledger_projection_lag_scrape_error gauge
callledger_projection_lag_scrape_error 0
# HELP callledger_projection_lag_seconds Age of the oldest event the call-state projection has not applied yet; 0 when it is current.
# TYPE callledger_projection_lag_seconds gauge
callledger_projection_lag_seconds 1.5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	// A failed measurement drops the lag gauges (no stale zero that
	// would hide a lag) and raises the error gauge.
	lagErr = errors.New("store closed")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP callledger_projection_lag_scrape_error 1 when the last scrape could not measure the projection lag.
# TYPE callledger_projection_lag_scrape_error gauge
callledger_projection_lag_scrape_error 1
`), "callledger_projection_lag_scrape_error", "callledger_projection_lag_seconds", "callledger_projection_lag_events"); err != nil {
		t.Error(err)
	}
}
