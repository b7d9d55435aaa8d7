package server

import (
	"google.golang.org/grpc"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/internal/loadshed"
)

// Overload bounds what queries and watchers may hold, so that a flood of
// them neither exhausts memory nor takes it from the webhooks (no flags:
// the defaults are measured in docs/BENCHMARKS.md).
type Overload struct {
	// MaxQueries and MaxStreams bound the queries and the streams
	// (WatchCalls, RebuildProjection) in progress; beyond them calls get
	// RESOURCE_EXHAUSTED. Defaults: loadshed.DefaultMaxQueries,
	// loadshed.DefaultMaxStreams.
	MaxQueries, MaxStreams int
	// MaxStreamsPerConn is gRPC's MaxConcurrentStreams: the calls one
	// client connection may have open (default 256).
	MaxStreamsPerConn uint32
	// BusyShare: while the webhook appends in flight exceed this share of
	// HTTP.MaxInFlight, new queries and streams are refused (default 0.5).
	BusyShare float64
}

// shedding returns the gRPC options that keep queries and watchers within
// Overload: per-connection streams, and the interceptors that shed the
// query and projection services first when the webhooks are busy.
func (s *Server) shedding() (grpc.ServerOption, grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	o := s.cfg.Overload
	perConn := o.MaxStreamsPerConn
	if perConn == 0 {
		perConn = 256
	}
	share := o.BusyShare
	if share <= 0 {
		share = 0.5
	}
	busyAt := max(1, int(share*float64(s.cfg.HTTP.MaxInFlight)))
	shed := loadshed.New(loadshed.Limits{
		MaxQueries: o.MaxQueries, MaxStreams: o.MaxStreams,
		Services: []string{
			callledgerv1.CallQueryService_ServiceDesc.ServiceName,
			callledgerv1.ProjectionService_ServiceDesc.ServiceName,
		},
		Busy: func() bool { return s.hooks.InFlight() >= busyAt },
	})
	return grpc.MaxConcurrentStreams(perConn), shed.Unary(), shed.Stream()
}
