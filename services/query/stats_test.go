package query_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/services/query"
)

func TestGetStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()

	empty, err := e.client.GetStats(ctx, &callledgerv1.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if empty.GetTotalCalls() != 0 || empty.GetActiveCalls() != 0 || empty.GetDeliveryDelay().GetSamples() != 0 ||
		empty.GetWindow().AsDuration() != query.DefaultStatsWindow {
		t.Errorf("stats of an empty ledger: %v", empty)
	}

	// Events received just now, reported 1, 2 and 4 seconds earlier; and
	// one received long ago, outside any window.
	now := time.Now()
	delayed := func(ev *callledgerv1.Event, d time.Duration) *callledgerv1.Event {
		ev.ReceivedAt = timestamppb.New(now)
		ev.ReportedAt = timestamppb.New(now.Add(-d))
		return ev
	}
	pos := e.appendAll(t, []*callledgerv1.Event{
		delayed(statusEvent(sid(1), "", callledgerv1.CallStatus_CALL_STATUS_RINGING, now), time.Second),
		delayed(statusEvent(sid(2), "", callledgerv1.CallStatus_CALL_STATUS_COMPLETED, now), 2*time.Second),
		delayed(statusEvent(sid(3), "", callledgerv1.CallStatus_CALL_STATUS_BUSY, now), 4*time.Second),
		statusEvent(sid(4), "", callledgerv1.CallStatus_CALL_STATUS_COMPLETED, base),
	})
	e.waitApplied(t, pos)

	got, err := e.client.GetStats(ctx, &callledgerv1.GetStatsRequest{Window: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	byStatus := map[callledgerv1.CallStatus]int64{}
	for _, sc := range got.GetCallsByStatus() {
		byStatus[sc.GetStatus()] = sc.GetCount()
	}
	want := map[callledgerv1.CallStatus]int64{
		callledgerv1.CallStatus_CALL_STATUS_RINGING:   1,
		callledgerv1.CallStatus_CALL_STATUS_COMPLETED: 2,
		callledgerv1.CallStatus_CALL_STATUS_BUSY:      1,
	}
	if len(byStatus) != len(want) {
		t.Errorf("calls by status %v, want %v", byStatus, want)
	}
	for st, n := range want {
		if byStatus[st] != n {
			t.Errorf("calls by status %v, want %v", byStatus, want)
			break
		}
	}
	if got.GetActiveCalls() != 1 || got.GetTotalCalls() != 4 || got.GetPosition() < uint64(pos) {
		t.Errorf("active %d, total %d, position %d; want 1, 4, ≥ %d", got.GetActiveCalls(), got.GetTotalCalls(), got.GetPosition(), pos)
	}
	d := got.GetDeliveryDelay()
	if d.GetSamples() != 3 || d.GetP50().AsDuration() != 2*time.Second || d.GetP99().AsDuration() != 4*time.Second ||
		d.GetMax().AsDuration() != 4*time.Second {
		t.Errorf("delivery delay %v, want 3 samples, p50 2s, p99 and max 4s", d)
	}

	for _, w := range []time.Duration{-time.Second, 0, query.MaxStatsWindow + time.Second} {
		_, err := e.client.GetStats(ctx, &callledgerv1.GetStatsRequest{Window: durationpb.New(w)})
		wantCode(t, err, codes.InvalidArgument)
	}
}
