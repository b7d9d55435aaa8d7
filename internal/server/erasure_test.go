package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/erasure"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/logsink"
	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/traffic"
)

// send delivers signed requests to srv's webhooks and fails on any answer
// but 2xx.
func send(t *testing.T, srv *server.Server, reqs []traffic.Request) {
	t.Helper()
	base := "http://" + srv.Addrs().HTTP
	for _, r := range reqs {
		req, err := http.NewRequest(r.Method, base+r.URI(), bytes.NewReader(r.Body))
		if err != nil {
			t.Error(err)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("%s %s: HTTP %d", r.Method, r.Path, resp.StatusCode)
			return
		}
	}
}

// applied waits until srv's read model has applied everything in its log.
func applied(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), failBound)
	defer cancel()
	head, err := srv.Store().Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Projection().WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
}

// allCalls lists every call of the read model.
func allCalls(t *testing.T, conn *grpc.ClientConn) []*callledgerv1.Call {
	t.Helper()
	resp, err := callledgerv1.NewCallQueryServiceClient(conn).ListCalls(t.Context(), &callledgerv1.ListCallsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetNextPageToken() != "" {
		t.Fatal("more calls than one page")
	}
	return resp.GetCalls()
}

func getCall(t *testing.T, conn *grpc.ClientConn, sid string, pos uint64) *callledgerv1.GetCallResponse {
	t.Helper()
	resp, err := callledgerv1.NewCallQueryServiceClient(conn).GetCall(t.Context(), &callledgerv1.GetCallRequest{CallSid: sid, MinPosition: pos})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// facts is what an erasure must leave of a call: everything but its
// personal fields and the redaction itself.
func facts(c *callledgerv1.Call) *callledgerv1.Call {
	f := proto.CloneOf(c)
	f.From, f.To, f.CallerName, f.ForwardedFrom, f.SipCallId, f.Redacted, f.LastPosition = "", "", "", "", "", false, 0
	for _, r := range f.GetRecordings() {
		r.Url = ""
		for _, tr := range r.GetTranscriptions() {
			tr.Text, tr.Url = "", ""
		}
	}
	for _, p := range f.GetConferences() {
		p.Label = ""
	}
	return f
}

// checkRedacted fails unless c is redacted, holds no personal field, and
// keeps every fact of before.
func checkRedacted(t *testing.T, c, before *callledgerv1.Call) {
	t.Helper()
	if !c.GetRedacted() || c.GetFrom() != "" || c.GetTo() != "" || c.GetCallerName() != "" {
		t.Errorf("%s not redacted: redacted=%v from=%q to=%q", c.GetCallSid(), c.GetRedacted(), c.GetFrom(), c.GetTo())
	}
	for _, r := range c.GetRecordings() {
		if r.GetUrl() != "" {
			t.Errorf("%s: recording %s keeps its URL", c.GetCallSid(), r.GetRecordingSid())
		}
	}
	if before != nil && !proto.Equal(facts(c), facts(before)) {
		t.Errorf("%s: an erasure changed facts:\n got %v\nwant %v", c.GetCallSid(), facts(c), facts(before))
	}
}

// TestEraseByCallAndByNumber: through the gRPC API of a real server, an
// erasure of a call redacts its whole tree, an erasure of a number every
// call naming it with their trees, statuses and times unchanged, other
// calls untouched; a rebuild of the read model gives the same; the journal
// holds CallSids and no number; the erased calls are counted.
func TestEraseByCallAndByNumber(t *testing.T) {
	t.Parallel()
	journal := filepath.Join(t.TempDir(), "erasures.jsonl")
	srv, _ := start(t, server.Config{Erasure: server.Erasure{Journal: journal}})
	send(t, srv, traffic.Generate(traffic.Config{Calls: 12, Seed: 3, PublicURL: publicURL, Token: token, RetryRate: -1}))
	applied(t, srv)
	conn := dialLocal(t, srv)
	admin := callledgerv1.NewAdminServiceClient(conn)
	before := map[string]*callledgerv1.Call{}
	for _, c := range allCalls(t, conn) {
		before[c.GetCallSid()] = c
	}

	// By call: a root with a child leg.
	var root *callledgerv1.Call
	for _, c := range before {
		if len(c.GetChildCallSids()) > 0 && (root == nil || c.GetCallSid() < root.GetCallSid()) {
			root = c
		}
	}
	if root == nil {
		t.Fatal("the traffic has no call with a child leg")
	}
	tree := getCall(t, conn, root.GetChildCallSids()[0], 0) // by a child: the whole tree goes
	resp, err := admin.Erase(t.Context(), &callledgerv1.EraseRequest{CallSid: root.GetChildCallSids()[0]})
	if err != nil {
		t.Fatal(err)
	}
	var legs []string
	for _, l := range tree.GetLegs() {
		legs = append(legs, l.GetCallSid())
	}
	slices.Sort(legs)
	if !slices.Equal(resp.GetCallSids(), legs) || resp.GetCalls() != int32(len(legs)) || resp.GetErasureId() == "" {
		t.Fatalf("Erase(call) = %v, want the tree %v", resp, legs)
	}
	if resp.GetPlaintextEvents() != 0 {
		t.Errorf("%d plaintext events counted: every event of this ledger was sealed", resp.GetPlaintextEvents())
	}
	erased := map[string]bool{}
	for _, sid := range legs {
		erased[sid] = true
		checkRedacted(t, getCall(t, conn, sid, resp.GetPosition()).GetCall(), before[sid])
	}

	// By number: the caller of another call, typed as people type it.
	var number string
	for _, c := range before {
		if !erased[c.GetCallSid()] && strings.HasPrefix(c.GetFrom(), "+1") && len(c.GetFrom()) == 12 {
			number = c.GetFrom()
			break
		}
	}
	if number == "" {
		t.Fatal("no call with a NANP caller left")
	}
	typed := "+1 (" + number[2:5] + ") " + number[5:8] + "-" + number[8:]
	resp2, err := admin.Erase(t.Context(), &callledgerv1.EraseRequest{Number: typed})
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for sid, c := range before {
		if c.GetFrom() == number || c.GetTo() == number {
			named[sid] = true
		}
	}
	for sid := range named {
		if !slices.Contains(resp2.GetCallSids(), sid) {
			t.Errorf("Erase(number) left %s, which names the number", sid)
		}
	}
	for _, sid := range resp2.GetCallSids() {
		erased[sid] = true
		checkRedacted(t, getCall(t, conn, sid, resp2.GetPosition()).GetCall(), before[sid])
	}
	kept := 0
	for sid, c := range before {
		if erased[sid] {
			continue
		}
		kept++
		if got := getCall(t, conn, sid, resp2.GetPosition()).GetCall(); got.GetRedacted() || !proto.Equal(got, c) {
			t.Errorf("%s, never erased, changed:\n got %v\nwant %v", sid, got, c)
		}
	}
	if kept == 0 {
		t.Fatal("every call was erased: the test shows nothing about the others")
	}
	nothing, err := admin.Erase(t.Context(), &callledgerv1.EraseRequest{Number: "+15550009999"})
	if err != nil || nothing.GetErasureId() != "" || nothing.GetCalls() != 0 {
		t.Errorf("Erase(a number no call names) = %v, %v; want nothing erased", nothing, err)
	}

	// A rebuild folds the ErasureRecorded events of the log: the same.
	redacted := map[string]*callledgerv1.Call{}
	for sid := range erased {
		redacted[sid] = getCall(t, conn, sid, 0).GetCall()
	}
	stream, err := callledgerv1.NewProjectionServiceClient(conn).RebuildProjection(t.Context(), &callledgerv1.RebuildProjectionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for sid, want := range redacted {
		if got := getCall(t, conn, sid, 0).GetCall(); !proto.Equal(got, want) {
			t.Errorf("%s after a rebuild:\n got %v\nwant %v", sid, got, want)
		}
	}

	// The journal: two erasures, CallSids only.
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := erasure.ReadJournal(bytes.NewReader(b))
	if err != nil || len(entries) != 2 || entries[0].ID != resp.GetErasureId() || entries[1].ID != resp2.GetErasureId() {
		t.Fatalf("journal %s: %v, %v", b, entries, err)
	}
	if bytes.Contains(b, []byte(number[2:])) {
		t.Errorf("the journal holds the erased number: %s", b)
	}
	if entries[0].By != server.LocalPrincipal {
		t.Errorf("journal: by %q, want the principal %q", entries[0].By, server.LocalPrincipal)
	}
	fams := scrape(t, "http://"+srv.Addrs().HTTP+"/metrics")
	for _, m := range fams["callledger_erasure_calls_total"].GetMetric() {
		if m.GetLabel()[0].GetValue() == "operator" && int(m.GetCounter().GetValue()) != len(erased) {
			t.Errorf("callledger_erasure_calls_total{requester=operator} = %v, want %d", m.GetCounter().GetValue(), len(erased))
		}
	}
}

// TestJournalReplayAfterRestore: a copy of the data directory taken before
// an erasure ("a backup"), restored, comes back with the erased calls in
// the clear; started with the erasure journal, the server destroys their
// keys again, records the erasure again, and the calls are redacted again.
// A second start replays nothing new.
func TestJournalReplayAfterRestore(t *testing.T) {
	t.Parallel()
	dir, backup := filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "backup")
	journal := filepath.Join(t.TempDir(), "erasures.jsonl")
	cfg := server.Config{DataDir: dir, Erasure: server.Erasure{Journal: journal}}
	srv, stop := start(t, cfg)
	send(t, srv, traffic.Generate(traffic.Config{Calls: 4, Seed: 5, PublicURL: publicURL, Token: token, RetryRate: -1}))
	applied(t, srv)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", dir, backup).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}

	srv, stop = start(t, cfg)
	conn := dialLocal(t, srv)
	victim := allCalls(t, conn)[0]
	resp, err := callledgerv1.NewAdminServiceClient(conn).Erase(t.Context(), &callledgerv1.EraseRequest{CallSid: victim.GetCallSid()})
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The restore, with the journal kept elsewhere.
	logs := &logsink.Buffer{}
	cfg.DataDir, cfg.Logger = backup, slog.New(slog.NewTextHandler(logs, nil))
	srv, stop = start(t, cfg)
	conn = dialLocal(t, srv)
	applied(t, srv)
	for _, sid := range resp.GetCallSids() {
		checkRedacted(t, getCall(t, conn, sid, 0).GetCall(), nil)
	}
	if !strings.Contains(logs.String(), "erasure journal replayed") || !strings.Contains(logs.String(), "entries=1 replayed=1") {
		t.Errorf("the start-up log does not say one entry was replayed:\n%s", logs.String())
	}
	recs, err := srv.Store().ReadStream(t.Context(), eventcodec.ErasureStream, 0, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("erasures stream: %d events, %v", len(recs), err)
	}
	ev, err := eventcodec.Decode(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if e := ev.GetErasureRecorded(); !e.GetReplay() || e.GetErasureId() != resp.GetErasureId() || !slices.Equal(e.GetCallSids(), resp.GetCallSids()) {
		t.Errorf("the replay recorded %v", e)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	logs = &logsink.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	srv, _ = start(t, cfg)
	if !strings.Contains(logs.String(), "entries=1 replayed=0") {
		t.Errorf("a second start replays again:\n%s", logs.String())
	}
	if recs, _ := srv.Store().ReadStream(t.Context(), eventcodec.ErasureStream, 0, 10); len(recs) != 1 {
		t.Errorf("a second start recorded the erasure again: %d events", len(recs))
	}
}

// TestRetentionUnderIngest: with --retention, the calls that ended longer
// ago than the retention (by an injected clock) are erased in batches
// while webhooks of newer calls keep being acknowledged; the newer calls
// are untouched.
func TestRetentionUnderIngest(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	var clock atomic.Pointer[time.Time]
	never := t0.Add(-time.Hour) // nothing is due until the clock moves
	clock.Store(&never)
	srv, _ := start(t, server.Config{
		Erasure: server.Erasure{Retention: time.Hour, RetentionInterval: 5 * time.Millisecond, RetentionBatch: 4},
		Seams:   server.Seams{RetentionClock: func() time.Time { return *clock.Load() }},
	})
	old := traffic.Generate(traffic.Config{Calls: 10, Seed: 8, Start: t0, PublicURL: publicURL, Token: token, RetryRate: -1})
	send(t, srv, old)
	applied(t, srv)
	conn := dialLocal(t, srv)
	oldCalls := allCalls(t, conn)
	if len(oldCalls) < 10 {
		t.Fatalf("%d calls", len(oldCalls))
	}

	// The old calls age past the retention while a day's newer calls come in.
	aged := t0.Add(6 * time.Hour)
	clock.Store(&aged)
	var wg sync.WaitGroup
	newer := traffic.Generate(traffic.Config{Calls: 10, Seed: 9, Start: t0.Add(24 * time.Hour), PublicURL: publicURL, Token: token, RetryRate: -1})
	wg.Go(func() { send(t, srv, newer) })
	ctx, cancel := context.WithTimeout(t.Context(), failBound)
	defer cancel()
	for _, c := range oldCalls {
		for {
			got := getCall(t, conn, c.GetCallSid(), 0).GetCall()
			if got.GetRedacted() {
				checkRedacted(t, got, c)
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s not erased by retention", c.GetCallSid())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	wg.Wait()
	applied(t, srv)
	for _, c := range allCalls(t, conn) {
		if slices.ContainsFunc(oldCalls, func(o *callledgerv1.Call) bool { return o.GetCallSid() == c.GetCallSid() }) {
			continue
		}
		if c.GetRedacted() || c.GetFrom() == "" {
			t.Errorf("%s, a newer call, was erased", c.GetCallSid())
		}
	}
	// Several batches, each recorded as retention's.
	recs, err := srv.Store().ReadStream(t.Context(), eventcodec.ErasureStream, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 3 {
		t.Errorf("%d erasures for %d calls in batches of 4", len(recs), len(oldCalls))
	}
	for _, rec := range recs {
		ev, err := eventcodec.Decode(rec)
		if err != nil {
			t.Fatal(err)
		}
		if e := ev.GetErasureRecorded(); e.GetRequestedBy() != server.RetentionRequester || len(e.GetCallSids()) > 4 {
			t.Errorf("retention recorded %v", e)
		}
	}
}

// TestEraseUnknownCallAndBadRequests: refusals erase nothing.
func TestEraseRefusals(t *testing.T) {
	t.Parallel()
	srv, _ := start(t, server.Config{})
	admin := callledgerv1.NewAdminServiceClient(dialLocal(t, srv))
	for _, req := range []*callledgerv1.EraseRequest{
		{},
		{Number: "+15555550100", CallSid: "CA" + strings.Repeat("0", 32)},
		{CallSid: "CA123"},
		{Number: "   "},
	} {
		if _, err := admin.Erase(t.Context(), req); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
			t.Errorf("Erase(%v) = %v, want INVALID_ARGUMENT", req, err)
		}
	}
	if _, err := admin.Erase(t.Context(), &callledgerv1.EraseRequest{CallSid: "CA" + strings.Repeat("a", 32)}); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("Erase(an unknown call) = %v, want NOT_FOUND", err)
	}
	if _, err := srv.Store().ReadStream(t.Context(), eventcodec.ErasureStream, 0, 1); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("a refusal recorded an erasure: %v", err)
	}
	// The key store is the data directory's, beside the ledger.
	if _, err := os.Stat(server.KeyStorePath(srv.DataDir())); err != nil {
		t.Error(err)
	}
}
