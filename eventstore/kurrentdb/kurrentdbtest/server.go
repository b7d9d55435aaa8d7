// Package kurrentdbtest provides an in-process stand-in for a single-node
// KurrentDB (EventStoreDB) server, for tests, as net/http/httptest does for
// HTTP servers. It serves the gRPC protocol of the server interfaces
// generated inside EventStore-Client-Go v4, with the semantics the v4.2.0
// client relies on, so that the kurrentdb adapter and everything built on it
// (the end-to-end and command tests) can run without a real server, which
// cannot run on the build machines.
//
// Only _test.go files import it. It is not a database (nothing is
// persisted) and is never offered to users: the binary does not link it.
//
// What it reproduces:
//
//   - Appends with expected revisions and the server's idempotency rules:
//     exact revisions walk the stored events (reliable); Any and StreamExists
//     consult a bounded cache of recently written IDs (best effort, so a
//     forgotten ID is written again, as on a real server).
//   - Stream reads and $all reads, forwards and backwards, from revisions and
//     positions, with counts; a missing stream answers stream_not_found; a
//     $all read from a position that is not a record boundary fails with
//     InvalidArgument, as the server's "invalid position" does.
//   - Catch-up subscriptions to $all: confirmation first, then events,
//     checkpoints for filtered subscriptions (every window × multiplier
//     considered records, and at the transition to live), caught_up, then
//     live events; exclusive start positions.
//   - Non-contiguous, strictly increasing, byte-offset-like positions; a few
//     system events ($-prefixed streams and types) written at start, as a
//     fresh server has; the "created" metadata on every recorded event.
//   - Error trailers: wrong expected version as an append reply body,
//     stream-deleted with stream-name, not-leader with the leader's host and
//     port, maximum-append-size-exceeded; ServerFeatures and Gossip (so that
//     esdb+discover:// works); a permissive keepalive enforcement policy.
//   - Fault injection: drop every subscription with a status; fail the next
//     N calls; answer not-leader; stall calls until released; stop and
//     restart the listener on the same address with the data kept.
//
// What it does not reproduce: persistence, clustering and replication,
// authentication and ACLs, stream metadata ($max-count, $tb…), soft delete,
// link resolution, stream subscriptions, filtered plain reads, batch append,
// projections, and the real server's regular expression dialect (.NET; Go's
// RE2 is used).
package kurrentdbtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Options tunes a Server. The zero value behaves like a fresh, current
// single-node server.
type Options struct {
	// NoSystemEvents leaves the log empty at start instead of writing the
	// few system events a fresh server has.
	NoSystemEvents bool
	// RecentIDs bounds the cache of recently written event IDs that appends
	// expecting Any or StreamExists consult. Default 1000.
	RecentIDs int
	// MaxAppendSize bounds the bytes of one append, as the server's
	// --max-append-size does. Default 1 MiB (the server's default).
	MaxAppendSize int
	// Version is what ServerFeatures reports. Default "24.10.0".
	Version string
	// NoServerFeatures leaves the ServerFeatures service unregistered (an
	// old server: the client then reports version 0.0.0).
	NoServerFeatures bool
	// LegacyIdempotentReply answers an idempotent append without a position,
	// as servers before 21.x did; current servers point at the originals.
	LegacyIdempotentReply bool
}

func (o Options) withDefaults() Options {
	if o.RecentIDs <= 0 {
		o.RecentIDs = 1000
	}
	if o.MaxAppendSize <= 0 {
		o.MaxAppendSize = 1 << 20
	}
	if o.Version == "" {
		o.Version = "24.10.0"
	}
	return o
}

// record is one event of the log. Records are immutable once written.
type record struct {
	pos      uint64 // commit and prepare position
	stream   string
	revision uint64
	id       uuid.UUID
	typ      string
	ctype    string
	created  int64 // 100 ns ticks since the Unix epoch
	data     []byte
	meta     []byte
}

type streamState struct {
	events     []*record // by revision
	tombstoned bool
}

// Server is a stand-in server. Its methods are safe for concurrent use.
type Server struct {
	streams.UnimplementedStreamsServer

	opts Options

	mu      sync.Mutex
	records []*record // ordered by position
	end     uint64    // position after the last record
	streams map[string]*streamState
	recent  *idCache
	changed chan struct{} // closed and replaced after every write
	nextSub int

	// faults, guarded by mu
	faults     []fault
	stall      *stallGate
	drop       chan struct{} // closed to drop the current subscriptions
	dropStatus *status.Status
	calls      map[string]int

	// transport, guarded by mu
	addr    string
	host    string
	port    int
	srv     *grpc.Server
	running bool
	stopped chan struct{} // closed when the current grpc server has stopped serving
}

// firstPosition is where the first event goes: the log starts with an
// epoch-like record that is not an event, as a real transaction file does,
// so that no event sits at position 0 (the port's Start).
const firstPosition = 256

// Start starts a server on a free loopback port.
func Start(opts Options) (*Server, error) {
	s := &Server{
		opts:    opts.withDefaults(),
		end:     firstPosition,
		streams: map[string]*streamState{},
		changed: make(chan struct{}),
		drop:    make(chan struct{}),
		calls:   map[string]int{},
	}
	s.recent = newIDCache(s.opts.RecentIDs)
	if !s.opts.NoSystemEvents {
		s.writeSystemEvents()
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("stand-in: listen: %w", err)
	}
	s.addr = lis.Addr().String()
	host, port, err := net.SplitHostPort(s.addr)
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("stand-in: address %s: %w", s.addr, err)
	}
	s.host = host
	s.port, _ = strconv.Atoi(port)
	s.mu.Lock()
	s.serveLocked(lis)
	s.mu.Unlock()
	return s, nil
}

// writeSystemEvents writes what a fresh server's log holds before any user
// write: events of $-prefixed streams with $-prefixed types.
func (s *Server) writeSystemEvents() {
	sys := []struct{ stream, typ, data string }{
		{"$$$scavenges", "$metadata", `{"$maxAge":2592000}`},
		{"$users", "$User", `{"loginName":"admin"}`},
		{"$user-admin", "$user", `{"loginName":"admin","fullName":"Event Store Administrator"}`},
		{"$settings", "$update-default-acl", `{"$userStreamAcl":{}}`},
	}
	for _, e := range sys {
		s.AppendSystemEvent(e.stream, e.typ, []byte(e.data))
	}
}

// AppendSystemEvent writes an event as the server itself would (to a
// $-prefixed stream, say), bypassing every check, so that tests can show the
// adapter hides such events. It returns the event's position.
func (s *Server) AppendSystemEvent(stream, typ string, data []byte) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stream(stream)
	rec := &record{
		stream:   stream,
		revision: uint64(len(st.events)),
		id:       uuid.New(),
		typ:      typ,
		ctype:    "application/json",
		data:     data,
	}
	s.commitLocked([]*record{rec})
	return rec.pos
}

func (s *Server) stream(name string) *streamState {
	st := s.streams[name]
	if st == nil {
		st = &streamState{}
		s.streams[name] = st
	}
	return st
}

// commitLocked assigns positions and creation times, adds recs to the log
// and their streams, and wakes subscriptions.
func (s *Server) commitLocked(recs []*record) {
	now := time.Now().UnixNano() / 100
	for _, r := range recs {
		r.pos = s.end
		r.created = now
		// Byte-offset-like: a record's size is a fixed header plus its
		// variable parts, rounded to 8 bytes.
		size := uint64(96 + len(r.stream) + len(r.typ) + len(r.data) + len(r.meta))
		s.end += (size + 7) &^ 7
		s.records = append(s.records, r)
		st := s.stream(r.stream)
		st.events = append(st.events, r)
		s.recent.add(r.stream, r.id, r.revision)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// validPositionLocked reports whether a $all read may start at p: the start
// of the log, a record's position, or the end of the log and beyond.
func (s *Server) validPositionLocked(p uint64) bool {
	if p == 0 || p >= s.end {
		return true
	}
	i := sort.Search(len(s.records), func(i int) bool { return s.records[i].pos >= p })
	return i < len(s.records) && s.records[i].pos == p
}

// indexAfterLocked returns the index of the first record after position p.
func (s *Server) indexAfterLocked(p uint64) int {
	return sort.Search(len(s.records), func(i int) bool { return s.records[i].pos > p })
}

// indexFromLocked returns the index of the first record at or after p.
func (s *Server) indexFromLocked(p uint64) int {
	return sort.Search(len(s.records), func(i int) bool { return s.records[i].pos >= p })
}

// serveLocked starts a grpc server on lis.
func (s *Server) serveLocked(lis net.Listener) {
	srv := grpc.NewServer(
		// The client pings every 10 s even when idle; grpc-go's default
		// enforcement (5 min) would answer with GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(64<<20),
	)
	streams.RegisterStreamsServer(srv, s)
	if !s.opts.NoServerFeatures {
		serverfeatures.RegisterServerFeaturesServer(srv, features{s: s})
	}
	gossip.RegisterGossipServer(srv, gossiper{s: s})
	s.srv = srv
	s.running = true
	stopped := make(chan struct{})
	s.stopped = stopped
	go func() {
		defer close(stopped)
		_ = srv.Serve(lis) // returns when stopped
	}()
}

// Addr is the host:port the server listens on (also after Stop).
func (s *Server) Addr() string { return s.addr }

// ConnString is a connection string for the v4 client: plaintext, since the
// stand-in has no TLS.
func (s *Server) ConnString() string { return "esdb://" + s.addr + "?tls=false" }

// Stop closes the listener and every connection, as a crashed or
// unreachable server would; the data is kept for Restart.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, stopped := s.srv, s.stopped
	s.running = false
	s.srv = nil
	// Release stalled calls so that their handlers can end.
	if s.stall != nil {
		s.stall.open()
		s.stall = nil
	}
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-stopped
	}
}

// Restart listens again on the same address after Stop.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return errors.New("stand-in: restart while running")
	}
	var lis net.Listener
	var err error
	for range 50 { // the port may linger briefly after Stop
		if lis, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("stand-in: listen again on %s: %w", s.addr, err)
	}
	s.serveLocked(lis)
	return nil
}

// Close stops the server for good.
func (s *Server) Close() { s.Stop() }

// Head is the position of the last record of the log (system events
// included), or 0 when it is empty.
func (s *Server) Head() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.records) == 0 {
		return 0
	}
	return s.records[len(s.records)-1].pos
}

// features serves ServerFeatures with a plain X.Y.Z version (a suffix such
// as "-rc.1" makes the client's discovery fail).
type features struct {
	serverfeatures.UnimplementedServerFeaturesServer
	s *Server
}

func (f features) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	const svc = "event_store.client.streams.streams"
	return &serverfeatures.SupportedMethods{
		EventStoreServerVersion: f.s.opts.Version,
		Methods: []*serverfeatures.SupportedMethod{
			{ServiceName: svc, MethodName: "read"},
			{ServiceName: svc, MethodName: "append"},
			{ServiceName: svc, MethodName: "tombstone"},
		},
	}, nil
}

// gossiper answers Gossip/Read with one live leader: this server.
type gossiper struct {
	gossip.UnimplementedGossipServer
	s *Server
}

func (g gossiper) Read(context.Context, *shared.Empty) (*gossip.ClusterInfo, error) {
	return &gossip.ClusterInfo{Members: []*gossip.MemberInfo{{
		InstanceId:   protoUUID(uuid.NewSHA1(uuid.NameSpaceURL, []byte(g.s.addr))),
		TimeStamp:    time.Now().UnixNano() / 100,
		State:        gossip.MemberInfo_Leader,
		IsAlive:      true,
		HttpEndPoint: &gossip.EndPoint{Address: g.s.host, Port: uint32(g.s.port)},
	}}}, nil
}
