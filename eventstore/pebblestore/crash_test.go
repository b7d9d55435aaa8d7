package pebblestore_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/eventstore/storetest"
)

// crashDirEnv names the store directory of TestCrashChild; the child does
// nothing unless TestCrash sets it.
const crashDirEnv = "PEBBLESTORE_CRASH_CHILD_DIR"

const (
	crashWriters = 32
	crashStreams = 20 // per writer
	crashAcks    = 2000
)

// crashNamespace derives the child's repeated event IDs.
var crashNamespace = uuid.MustParse("6f1c2a52-3f0e-4f5e-9a43-8f4a1d0c2b7e")

// TestCrashChild is the process TestCrash kills: 32 writers append to many
// streams and print one line per acknowledged append,
//
//	ack <stream> <position> <next revision> <duplicates> <id>[,<id>]
//
// Every other append re-sends the previous append's event (same stream,
// same deterministic ID), which must come back as a duplicate.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		return // run only as TestCrash's child
	}
	s, err := pebblestore.Open(dir, pebblestore.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	var (
		mu  sync.Mutex
		out = bufio.NewWriter(os.Stdout)
		wg  sync.WaitGroup
	)
	// The parent kills us long before this; it only bounds an orphan.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ctx.Err() == nil; k++ {
				stream := fmt.Sprintf("crash-%02d-%02d", w, (k/2)%crashStreams)
				var evs []eventstore.EventData
				switch k % 4 {
				case 0, 1: // the same deterministic event twice
					id := uuid.NewSHA1(crashNamespace, []byte(fmt.Sprintf("%d/%d", w, k/2)))
					evs = []eventstore.EventData{{ID: id, Type: "Repeated", Data: []byte(stream)}}
				case 2:
					evs = []eventstore.EventData{{ID: uuid.New(), Type: "Single", Data: []byte(stream)}}
				default:
					evs = []eventstore.EventData{
						{ID: uuid.New(), Type: "Pair", Data: []byte(stream)},
						{ID: uuid.New(), Type: "Pair", Data: []byte(stream)},
					}
				}
				res, err := s.Append(ctx, stream, eventstore.Any(), evs...)
				if err != nil {
					if ctx.Err() == nil {
						fmt.Fprintf(os.Stderr, "writer %d: append: %v\n", w, err)
					}
					return
				}
				ids := make([]string, len(evs))
				for i := range evs {
					ids[i] = evs[i].ID.String()
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s %d %d %d %s\n", stream, res.Position, res.NextRevision, len(res.Duplicates), strings.Join(ids, ","))
				err = out.Flush() // one write per line: a line is in the pipe whole or not at all
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

// crashAck is one acknowledged append reported by the child.
type crashAck struct {
	stream string
	pos    eventstore.Position
	next   uint64
	dups   int
	ids    []uuid.UUID
}

func parseAck(line string) (crashAck, bool, error) {
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "ack" {
		return crashAck{}, false, nil
	}
	if len(f) != 6 {
		return crashAck{}, false, fmt.Errorf("malformed ack %q", line)
	}
	pos, err1 := strconv.ParseUint(f[2], 10, 64)
	next, err2 := strconv.ParseUint(f[3], 10, 64)
	dups, err3 := strconv.Atoi(f[4])
	a := crashAck{stream: f[1], pos: eventstore.Position(pos), next: next, dups: dups}
	for _, s := range strings.Split(f[5], ",") {
		id, err := uuid.Parse(s)
		if err != nil {
			return crashAck{}, false, fmt.Errorf("ack %q: %w", line, err)
		}
		a.ids = append(a.ids, id)
	}
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return crashAck{}, false, fmt.Errorf("ack %q: %w", line, err)
		}
	}
	return a, true, nil
}

// TestCrash kills a writing process with SIGKILL and checks that every
// append it acknowledged survives, exactly once, with contiguous positions,
// and that the dedup index survives too.
func TestCrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that never gets going is killed at the deadline; the test then
	// fails for lack of acks.
	timer := time.AfterFunc(storetest.Deadline, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()

	var acks []crashAck
	sc := bufio.NewScanner(stdout)
	read := func() {
		a, ok, err := parseAck(sc.Text())
		if err != nil {
			t.Error(err)
		}
		if ok {
			acks = append(acks, a)
		}
	}
	for len(acks) < crashAcks && sc.Scan() {
		read()
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatalf("kill: %v", err)
	}
	// Lines already in the pipe were acknowledged before the kill.
	for sc.Scan() {
		read()
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		t.Errorf("read child output: %v", err)
	}
	_ = cmd.Wait() // "signal: killed" is the point
	if len(acks) < crashAcks {
		t.Fatalf("child acknowledged %d appends before the deadline, want %d; stderr:\n%s", len(acks), crashAcks, stderr.String())
	}
	t.Logf("child acknowledged %d appends before SIGKILL", len(acks))

	s := openClosed(t, dir, pebblestore.Options{})
	ctx := context.Background()
	all := readAll(t, s)
	type place struct {
		stream string
		pos    eventstore.Position
		rev    uint64
	}
	stored := map[uuid.UUID]place{}
	for i, e := range all {
		if e.Position != eventstore.Position(i+1) {
			t.Fatalf("event %d at position %d: positions are not contiguous", i, e.Position)
		}
		if p, ok := stored[e.ID]; ok {
			t.Fatalf("event %s stored twice, at %d (%s) and %d (%s)", e.ID, p.pos, p.stream, e.Position, e.Stream)
		}
		stored[e.ID] = place{e.Stream, e.Position, e.Revision}
	}
	if h, err := s.Head(ctx); err != nil || h != eventstore.Position(len(all)) {
		t.Errorf("Head = %d, %v; want %d", h, err, len(all))
	}

	dupAcks := 0
	for _, a := range acks {
		if a.dups > 0 {
			dupAcks++
		}
		for i, id := range a.ids {
			p, ok := stored[id]
			if !ok {
				t.Fatalf("acknowledged event %s of %s lost", id, a.stream)
			}
			// Pairs are written together, so their positions and revisions
			// are consecutive, ending at what the append reported.
			back := uint64(len(a.ids) - 1 - i)
			if p.stream != a.stream || p.pos != a.pos-eventstore.Position(back) || (a.dups == 0 && p.rev != a.next-back) {
				t.Fatalf("acknowledged event %s (%s, position %d, revision %d) stored as %+v", id, a.stream, a.pos, a.next, p)
			}
		}
	}
	if dupAcks == 0 {
		t.Errorf("no acknowledged append was a duplicate; the child should repeat every other event")
	}

	// Every stream reads back gap-free, and re-sending what was acknowledged
	// writes nothing.
	streams := map[string]bool{}
	for _, a := range acks {
		streams[a.stream] = true
	}
	for stream := range streams {
		evs, err := s.ReadStream(ctx, stream, 0, 1<<20)
		if err != nil {
			t.Fatalf("read stream %s: %v", stream, err)
		}
		for i, e := range evs {
			if e.Revision != uint64(i) || e.Stream != stream {
				t.Fatalf("stream %s: event %d is %s@%d", stream, i, e.Stream, e.Revision)
			}
		}
	}
	head := len(all)
	for _, a := range acks[:200] {
		evs := make([]eventstore.EventData, len(a.ids))
		for i, id := range a.ids {
			evs[i] = eventstore.EventData{ID: id, Type: "Resent"}
		}
		res, err := s.Append(ctx, a.stream, eventstore.NoStream(), evs...)
		if err != nil || len(res.Duplicates) != len(a.ids) || res.Position != a.pos {
			t.Fatalf("re-append of acknowledged %v to %s: %+v, %v; want all duplicates at %d", a.ids, a.stream, res, err, a.pos)
		}
	}
	if h, _ := s.Head(ctx); h != eventstore.Position(head) {
		t.Errorf("re-appending acknowledged events moved the head from %d to %d", head, h)
	}
}
