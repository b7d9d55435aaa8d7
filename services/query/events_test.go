package query_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/services/query"
)

// TestListCallEventsPaging pages through one call's history, interleaved in
// the log with another call's: every event once, in revision order, with
// its position, type and body as appended.
func TestListCallEventsPaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	call, other := sid(1), sid(2)
	type appended struct {
		ev  *callledgerv1.Event
		pos eventstore.Position
	}
	var want []appended
	for i := range 25 {
		ev := statusEvent(call, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(time.Duration(i)*time.Second))
		if i%5 == 4 {
			ev = dialEvent(call, sid(100+i), callledgerv1.CallStatus_CALL_STATUS_NO_ANSWER, base.Add(time.Duration(i)*time.Second))
		}
		want = append(want, appended{ev, e.append(t, ev)})
		e.append(t, statusEvent(other, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base))
	}

	for _, tc := range []struct {
		size  int32
		pages int
	}{{10, 3}, {5, 5}, {25, 1}, {24, 2}, {0, 1}, {query.MaxPageSize, 1}} {
		var got []*callledgerv1.StoredEvent
		token, pages := "", 0
		for {
			resp, err := e.client.ListCallEvents(context.Background(), &callledgerv1.ListCallEventsRequest{CallSid: call, PageSize: tc.size, PageToken: token})
			if err != nil {
				t.Fatalf("page size %d, page %d: %v", tc.size, pages+1, err)
			}
			pages++
			got = append(got, resp.GetEvents()...)
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
			if pages > len(want) {
				t.Fatalf("page size %d: more pages than events", tc.size)
			}
		}
		if pages != tc.pages || len(got) != len(want) {
			t.Fatalf("page size %d: %d events in %d pages, want %d in %d", tc.size, len(got), pages, len(want), tc.pages)
		}
		for i, se := range got {
			typ, _ := eventcodec.TypeOf(want[i].ev)
			if se.GetRevision() != uint64(i) || se.GetPosition() != uint64(want[i].pos) || se.GetType() != typ {
				t.Errorf("page size %d, event %d: revision %d position %d type %s, want %d, %d, %s", tc.size, i, se.GetRevision(), se.GetPosition(), se.GetType(), i, want[i].pos, typ)
			}
			if !proto.Equal(se.GetEvent(), want[i].ev) {
				t.Errorf("page size %d, event %d: body differs from the appended event", tc.size, i)
			}
		}
	}
}

// TestListCallEventsWithoutOwnStream: a placeholder (known only from a
// child) and an unknown call both have an empty history.
func TestListCallEventsWithoutOwnStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	parent, child := sid(1), sid(2)
	pos := e.append(t, statusEvent(child, parent, callledgerv1.CallStatus_CALL_STATUS_RINGING, base))
	if got := e.getCall(t, parent, pos).GetCall(); !got.GetPlaceholder() {
		t.Fatalf("%s is not a placeholder", parent)
	}
	for _, s := range []string{parent, sid(3)} {
		resp, err := e.client.ListCallEvents(context.Background(), &callledgerv1.ListCallEventsRequest{CallSid: s})
		if err != nil || len(resp.GetEvents()) != 0 || resp.GetNextPageToken() != "" {
			t.Errorf("%s: %v, %d events, token %q; want an empty history", s, err, len(resp.GetEvents()), resp.GetNextPageToken())
		}
	}
	resp, err := e.client.ListCallEvents(context.Background(), &callledgerv1.ListCallEventsRequest{CallSid: child})
	if err != nil || len(resp.GetEvents()) != 1 {
		t.Errorf("child: %v, %d events; want 1", err, len(resp.GetEvents()))
	}
}

// TestListCallEventsUndecodable: a record that is not a callledger event is
// listed with its type and place, without a body, and logged.
func TestListCallEventsUndecodable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	call := sid(1)
	first := e.append(t, statusEvent(call, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base))
	res, err := e.events.Append(context.Background(), eventcodec.CallStream(call), eventstore.Any(),
		eventstore.EventData{ID: uuid.New(), Type: "SomethingElse", Data: []byte{0xff, 0xff, 0xff}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.ListCallEvents(context.Background(), &callledgerv1.ListCallEventsRequest{CallSid: call})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetEvents()) != 2 {
		t.Fatalf("%d events, want 2", len(resp.GetEvents()))
	}
	if ev := resp.GetEvents()[0]; ev.GetEvent() == nil || ev.GetPosition() != uint64(first) {
		t.Errorf("first event %v, want the status callback at %d", ev, first)
	}
	if ev := resp.GetEvents()[1]; ev.GetEvent() != nil || ev.GetType() != "SomethingElse" || ev.GetRevision() != 1 || ev.GetPosition() != uint64(res.Position) {
		t.Errorf("undecodable event %v, want type SomethingElse at revision 1, position %d, without a body", ev, res.Position)
	}
	if !strings.Contains(e.logs.String(), "undecodable") {
		t.Errorf("nothing logged about the undecodable event; logs:\n%s", e.logs)
	}
}

// brokenHistory is an event log that fails with an internal error.
type brokenHistory struct{}

func (brokenHistory) ReadStream(context.Context, string, uint64, int) ([]eventstore.RecordedEvent, error) {
	return nil, errors.New("read /secret/path/000042.sst: checksum mismatch")
}

// TestInternalErrorsStayInside: an unexpected failure is logged in full
// and answered INTERNAL without its details.
func TestInternalErrorsStayInside(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{history: func(eventstore.Store) query.History { return brokenHistory{} }})
	_, err := e.client.ListCallEvents(context.Background(), &callledgerv1.ListCallEventsRequest{CallSid: sid(1)})
	wantCode(t, err, codes.Internal)
	if msg := status.Convert(err).Message(); strings.Contains(msg, "secret") || strings.Contains(msg, "checksum") {
		t.Errorf("INTERNAL message %q leaks the internal error", msg)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "/secret/path/000042.sst") || !strings.Contains(logs, "ListCallEvents") {
		t.Errorf("internal error not logged with its method; logs:\n%s", logs)
	}
}

// TestListCallEventsByteBound: a page ends before its encoded events would
// pass the byte bound, however many page_size allows, and the next page
// goes on from there: every event once, in order. A single event larger
// than the bound still makes a page.
func TestListCallEventsByteBound(t *testing.T) {
	t.Parallel()
	const bound = 200 << 10
	e := newEnv(t, envOptions{maxPageBytes: bound})
	call := sid(3)
	body := []byte(strings.Repeat("x", 50<<10))
	const n = 12
	for i := range n {
		ev := statusEvent(call, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(time.Duration(i)*time.Second))
		ev.Request = &callledgerv1.HttpRequest{Method: "POST", Body: body}
		if i == n-1 {
			ev.Request.Body = []byte(strings.Repeat("y", bound)) // larger than a page
		}
		e.append(t, ev)
	}
	var revisions []uint64
	token, pages := "", 0
	for {
		resp, err := e.client.ListCallEvents(context.Background(), &callledgerv1.ListCallEventsRequest{CallSid: call, PageSize: query.MaxPageSize, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if size := proto.Size(resp); len(resp.GetEvents()) > 1 && size > bound {
			t.Errorf("page %d: %d events in %d bytes, over the bound of %d", pages, len(resp.GetEvents()), size, bound)
		}
		if len(resp.GetEvents()) == 0 {
			t.Fatalf("page %d is empty", pages)
		}
		for _, se := range resp.GetEvents() {
			revisions = append(revisions, se.GetRevision())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
		if pages > n {
			t.Fatal("more pages than events")
		}
	}
	if len(revisions) != n {
		t.Fatalf("%d events listed, want %d", len(revisions), n)
	}
	for i, r := range revisions {
		if r != uint64(i) {
			t.Fatalf("revisions %v: want 0 to %d once each, in order", revisions, n-1)
		}
	}
	if pages < 4 {
		t.Errorf("%d pages: the bound did not cut them", pages)
	}
}

// TestListCallEventsPageBytes: a page ends early once it holds the byte
// bound (never empty), its token leads on, and every event of the history
// comes once, in order, over the pages; a page size that crosses the
// log's read chunks changes nothing.
func TestListCallEventsPageBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxPageBytes: 3000})
	call := sid(7)
	var want []eventstore.Position
	for i := range 150 {
		want = append(want, e.append(t, statusEvent(call, "", callledgerv1.CallStatus_CALL_STATUS_RINGING, base.Add(time.Duration(i)*time.Second))))
	}
	one, err := e.events.ReadStream(context.Background(), eventcodec.CallStream(call), 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	perEvent := len(one[0].Data) + len(one[0].Metadata)
	for _, size := range []int32{1, 10, 100, query.MaxPageSize} {
		var got []eventstore.Position
		token, pages := "", 0
		for {
			resp, err := e.client.ListCallEvents(context.Background(), &callledgerv1.ListCallEventsRequest{CallSid: call, PageSize: size, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			n := len(resp.GetEvents())
			if n == 0 || n > int(size) || (n > 1 && n*perEvent > 3000+perEvent) {
				t.Fatalf("page size %d: a page of %d events of ~%d bytes under a 3000-byte bound", size, n, perEvent)
			}
			for _, ev := range resp.GetEvents() {
				got = append(got, eventstore.Position(ev.GetPosition()))
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
			if pages > len(want) {
				t.Fatal("more pages than events")
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("page size %d: positions %v, want %v", size, got, want)
		}
	}
}
