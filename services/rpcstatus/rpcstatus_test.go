package rpcstatus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/services/rpcstatus"
)

func TestMap(t *testing.T) {
	t.Parallel()
	// secret stands for the internal details a client must never see.
	const secret = "/var/lib/callledger/events/000042.sst"
	live := func(*testing.T) context.Context { return context.Background() }
	cancelled := func(*testing.T) context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	expired := func(t *testing.T) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		t.Cleanup(cancel)
		return ctx
	}
	for _, tc := range []struct {
		name     string
		ctx      func(*testing.T) context.Context
		retry    string
		err      error
		wantCode codes.Code
		wantMsg  string
		wantLog  string // the level of the log line, "" for none
	}{
		{"event store unavailable", live, "retry", fmt.Errorf("read %s: %w", secret, eventstore.ErrUnavailable),
			codes.Unavailable, "store unavailable; retry", "WARN"},
		{"call store closed", live, "retry", fmt.Errorf("get %s: %w", secret, callstore.ErrClosed),
			codes.Unavailable, "store unavailable; retry", "WARN"},
		{"a service's retry hint", live, "retry with the same request_id", fmt.Errorf("append %s: %w", secret, eventstore.ErrUnavailable),
			codes.Unavailable, "store unavailable; retry with the same request_id", "WARN"},
		{"request cancelled", cancelled, "retry", fmt.Errorf("read %s: %w", secret, context.Canceled),
			codes.Canceled, context.Canceled.Error(), ""},
		{"request deadline", expired, "retry", fmt.Errorf("read %s: %w", secret, context.DeadlineExceeded),
			codes.DeadlineExceeded, context.DeadlineExceeded.Error(), ""},
		{"a cancellation not the request's", live, "retry", fmt.Errorf("read %s: %w", secret, context.Canceled),
			codes.Internal, "internal error", "ERROR"},
		{"a deadline not the request's", live, "retry", fmt.Errorf("read %s: %w", secret, context.DeadlineExceeded),
			codes.Internal, "internal error", "ERROR"},
		{"internal", live, "retry", fmt.Errorf("open %s: %w", secret, errors.New("permission denied")),
			codes.Internal, "internal error", "ERROR"},
		{"internal in an ended request", cancelled, "retry", fmt.Errorf("decode %s: %w", secret, errors.New("bad varint")),
			codes.Internal, "internal error", "ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			m := rpcstatus.New(slog.New(slog.NewTextHandler(&logs, nil)), tc.retry)
			err := m.Map(tc.ctx(t), "GetCall", tc.err)
			st, ok := status.FromError(err)
			if !ok {
				t.Fatalf("Map returned %v, not a status", err)
			}
			if st.Code() != tc.wantCode || st.Message() != tc.wantMsg {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
			}
			if strings.Contains(st.Message(), secret) {
				t.Errorf("the answer %q reveals %s", st.Message(), secret)
			}
			line := logs.String()
			if tc.wantLog == "" {
				if line != "" {
					t.Errorf("logged %q, want nothing", line)
				}
				return
			}
			for _, want := range []string{"level=" + tc.wantLog, "method=GetCall", secret} {
				if !strings.Contains(line, want) {
					t.Errorf("log %q lacks %q", line, want)
				}
			}
		})
	}
}
