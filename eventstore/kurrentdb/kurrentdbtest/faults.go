package kurrentdbtest

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Method names, for fault injection and call counts.
const (
	MethodRead      = "Read" // plain reads and subscriptions
	MethodAppend    = "Append"
	MethodTombstone = "Tombstone"
)

// fault answers matching calls with an error instead of serving them.
type fault struct {
	remaining int
	methods   []string // empty: every Streams method
	code      codes.Code
	msg       string
	trailer   metadata.MD
}

func matches(methods []string, method string) bool {
	return len(methods) == 0 || slices.Contains(methods, method)
}

// FailNext answers the next n calls of the given Streams methods (all of
// them when none is named) with code and msg, as a server that is not ready
// ("Server Is Not Ready", Unavailable) or timing out (Aborted) does.
// Appends are drained first, as the real server does.
func (s *Server) FailNext(n int, code codes.Code, msg string, methods ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{remaining: n, methods: methods, code: code, msg: msg})
}

// NotLeaderNext answers the next n calls of the given methods as a follower
// does: NotFound with the not-leader exception and the leader's endpoint in
// the trailers. The client then reconnects to leaderAddr (host:port).
func (s *Server) NotLeaderNext(n int, leaderAddr string, methods ...string) {
	host, port, err := net.SplitHostPort(leaderAddr)
	if err != nil {
		panic("stand-in: leader address " + leaderAddr + ": " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, fault{
		remaining: n, methods: methods, code: codes.NotFound, msg: "Leader info available",
		trailer: metadata.Pairs("exception", "not-leader", "leader-endpoint-host", host, "leader-endpoint-port", port),
	})
}

// stallGate holds calls until it is opened.
type stallGate struct {
	methods []string
	ch      chan struct{}
	once    sync.Once
	waiting atomic.Int32
}

func (g *stallGate) open() { g.once.Do(func() { close(g.ch) }) }

// Stall holds every later call of the given methods (all Streams methods
// when none is named) until release is called or the caller gives up. Calls
// already being served are not affected. Stop also releases them.
func (s *Server) Stall(methods ...string) (release func()) {
	g := &stallGate{methods: methods, ch: make(chan struct{})}
	s.mu.Lock()
	if s.stall != nil {
		s.stall.open()
	}
	s.stall = g
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.stall == g {
			s.stall = nil
		}
		s.mu.Unlock()
		g.open()
	}
}

// Stalled reports how many calls the current stall holds.
func (s *Server) Stalled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stall == nil {
		return 0
	}
	return int(s.stall.waiting.Load())
}

// DropSubscriptions ends every open subscription with code and msg, as a
// server does on shutdown (Unavailable) or, before 22.x, for a consumer
// too slow while live (Aborted "Operation timed out: Consumer too slow…").
func (s *Server) DropSubscriptions(code codes.Code, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropStatus = status.New(code, msg)
	close(s.drop)
	s.drop = make(chan struct{})
}

// Calls reports how many calls of method the server has received.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// beforeCall counts the call, holds it while a stall applies, and returns
// the error of a pending fault, with its trailers set.
func (s *Server) beforeCall(ctx context.Context, method string) error {
	s.mu.Lock()
	s.calls[method]++
	gate := s.stall
	if gate != nil && !matches(gate.methods, method) {
		gate = nil
	}
	var f *fault
	for i := range s.faults {
		if matches(s.faults[i].methods, method) {
			cp := s.faults[i]
			f = &cp
			if s.faults[i].remaining--; s.faults[i].remaining <= 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
			break
		}
	}
	s.mu.Unlock()
	if gate != nil {
		gate.waiting.Add(1)
		select {
		case <-gate.ch:
			gate.waiting.Add(-1)
		case <-ctx.Done():
			gate.waiting.Add(-1)
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if f != nil {
		if f.trailer != nil {
			_ = grpc.SetTrailer(ctx, f.trailer)
		}
		return status.Error(f.code, f.msg)
	}
	return nil
}

// failWith returns a status error with the server's exception trailers.
func failWith(ctx context.Context, code codes.Code, msg string, kv ...string) error {
	if len(kv) > 0 {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(kv...))
	}
	return status.Error(code, msg)
}

func streamDeleted(ctx context.Context, name string) error {
	return failWith(ctx, codes.FailedPrecondition, "Event stream '"+name+"' is deleted.",
		"exception", "stream-deleted", "stream-name", name)
}

// idCache remembers recently written event IDs per stream, bounded: the
// server's equivalent is what makes Any appends idempotent "best effort".
type idCache struct {
	max   int
	order []idKey
	next  int
	revs  map[idKey]uint64
}

type idKey struct {
	stream string
	id     uuid.UUID
}

func newIDCache(max int) *idCache {
	return &idCache{max: max, revs: make(map[idKey]uint64, max)}
}

func (c *idCache) add(stream string, id uuid.UUID, rev uint64) {
	k := idKey{stream, id}
	if _, ok := c.revs[k]; ok {
		c.revs[k] = rev
		return
	}
	if len(c.order) < c.max {
		c.order = append(c.order, k)
	} else {
		delete(c.revs, c.order[c.next])
		c.order[c.next] = k
		c.next = (c.next + 1) % c.max
	}
	c.revs[k] = rev
}

func (c *idCache) lookup(stream string, id uuid.UUID) (uint64, bool) {
	rev, ok := c.revs[idKey{stream, id}]
	return rev, ok
}

func protoUUID(id uuid.UUID) *shared.UUID {
	most, least := uuidHalves(id)
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits: most, LeastSignificantBits: least,
	}}}
}

func uuidHalves(id uuid.UUID) (most, least int64) {
	for i := range 8 {
		most = most<<8 | int64(id[i])
		least = least<<8 | int64(id[8+i])
	}
	return most, least
}

func fromProtoUUID(u *shared.UUID) (uuid.UUID, bool) {
	if st := u.GetStructured(); st != nil {
		var id uuid.UUID
		most, least := uint64(st.MostSignificantBits), uint64(st.LeastSignificantBits)
		for i := 7; i >= 0; i-- {
			id[i] = byte(most)
			id[8+i] = byte(least)
			most >>= 8
			least >>= 8
		}
		return id, true
	}
	id, err := uuid.Parse(u.GetString_())
	return id, err == nil
}

func itoa(n int) string { return strconv.Itoa(n) }
