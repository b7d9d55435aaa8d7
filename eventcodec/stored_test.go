package eventcodec_test

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/internal/golden"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/projections/callstate"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/seal"
	"github.com/callledger/callledger/twilio"
	"github.com/callledger/callledger/twilio/rest"
)

var (
	addStored = flag.String("add-stored", "",
		"write a new generation of the stored-event corpus, as this version writes events, into testdata/stored/`NAME` (v2, v3, …); generations already there are never touched")
	updateFold = flag.Bool("update-fold", false,
		"rewrite testdata/folded/<generation>.json, the state each generation of stored events folds to: only after a deliberate change of the projection, which bumps its version")
)

const (
	storedDir      = "testdata/stored" // never changes, only grows
	storedManifest = "SHA256SUMS"
	foldedDir      = "testdata/folded" // changes with the projection's version
	// storedKeysDir holds, per generation written with sealing, the key
	// store that sealed it (a Pebble directory, KEK corpusKEK): without it
	// the generation's personal data cannot be opened.
	storedKeysDir = "testdata/stored-keys"
)

// storedFile is one stored event as the corpus keeps it: the record as the
// event store returned it, what wrote it, and the event as this version
// decoded it when it was written.
type storedFile struct {
	Note     string          `json:"note"`
	Stream   string          `json:"stream"`
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Metadata string          `json:"metadata"`
	Data     []byte          `json:"data"`
	Decoded  json.RawMessage `json:"decoded"`
}

// TestStoredEvents is the promise that the ledger stays readable: the
// events earlier versions wrote (testdata/stored/<generation>/, see its
// README) decode, with Decode and DecodeFacts, into the events they were
// written as, keep their IDs, type names and streams, and fold through the
// projection's own path (callstore's Apply, as the live projection does)
// into the committed state of their generation. The files never change
// (SHA256SUMS); a new generation is added with -add-stored, and the
// expected state (testdata/folded) is rewritten only with -update-fold.
func TestStoredEvents(t *testing.T) {
	t.Parallel()
	if *addStored != "" {
		addGeneration(t, *addStored)
	}
	gens := checkManifest(t)
	if len(gens) == 0 {
		t.Fatalf("no stored events in %s: run go test -run TestStoredEvents -add-stored=v1", storedDir)
	}
	seen := map[string]bool{}
	for _, gen := range gens {
		t.Run(gen, func(t *testing.T) {
			files := loadGeneration(t, gen)
			personal := openStoredKeys(t, gen)
			recs := make([]eventstore.RecordedEvent, len(files))
			revisions := map[string]uint64{}
			for i, f := range files {
				recs[i] = f.record(t, eventstore.Position(i+1), revisions[f.Stream])
				revisions[f.Stream]++
				checkStored(t, gen, f, recs[i], personal)
				seen[f.Type] = true
			}
			checkFold(t, gen, recs, personal, *updateFold || gen == *addStored)
		})
	}
	// Every kind of event the ledger stores has stored examples.
	body := (&callledgerv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	for i := range body.Len() {
		if name := string(body.Get(i).Message().Name()); !seen[name] {
			t.Errorf("no stored %s event: add a generation that writes one (docs/EVENTS.md)", name)
		}
	}
}

var generationName = regexp.MustCompile(`^v[1-9][0-9]*$`)

// addGeneration writes the events of writeStoredEvents into a new
// generation directory, adds them to the manifest and writes their fold.
func addGeneration(t *testing.T, gen string) {
	if !generationName.MatchString(gen) {
		t.Fatalf("-add-stored=%q: a generation is named v1, v2, …", gen)
	}
	dir := filepath.Join(storedDir, gen)
	if _, err := os.Stat(dir); err == nil {
		t.Fatalf("%s exists: stored events never change; name a new generation", dir)
	}
	written, keysDir := writeStoredEvents(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(storedKeysDir, gen), noLock{os.DirFS(keysDir)}); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(storedDir, storedManifest))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for i, w := range written {
		ev, err := eventcodec.Decode(w.rec)
		if err != nil {
			t.Fatal(err)
		}
		f := storedFile{
			Note: w.note, Stream: w.rec.Stream, Type: w.rec.Type, ID: w.rec.ID.String(),
			Metadata: string(w.rec.Metadata), Data: w.rec.Data, Decoded: protoJSON(t, ev),
		}
		b := indentedFile(t, f)
		name := fmt.Sprintf("%03d-%s.json", i+1, kebab(w.rec.Type))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		sums = fmt.Appendf(sums, "%s  %s/%s\n", hex.EncodeToString(sum[:]), gen, name)
	}
	if err := os.WriteFile(filepath.Join(storedDir, storedManifest), sums, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d stored events into %s", len(written), dir)
}

// checkManifest checks every file of every generation against SHA256SUMS
// and returns the generations.
func checkManifest(t *testing.T) []string {
	t.Helper()
	sums := map[string]string{}
	if f, err := os.Open(filepath.Join(storedDir, storedManifest)); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			sum, name, ok := strings.Cut(sc.Text(), "  ")
			if !ok {
				t.Fatalf("%s: line %q is not <sha256>  <file>", storedManifest, sc.Text())
			}
			sums[name] = sum
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var gens []string
	err := filepath.WalkDir(storedDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(storedDir, path)
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir() && rel != ".":
			if !generationName.MatchString(rel) {
				t.Errorf("%s: a generation directory is named v1, v2, …", path)
				return fs.SkipDir
			}
			gens = append(gens, rel)
		case !d.IsDir() && strings.Contains(rel, "/"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			got := sha256.Sum256(b)
			want, ok := sums[rel]
			switch {
			case !ok:
				t.Errorf("%s is not in %s: stored events are added with -add-stored, never by hand", path, storedManifest)
			case hex.EncodeToString(got[:]) != want:
				t.Errorf("%s changed: stored events never change (docs/EVENTS.md: a changed meaning is a new field or an upcaster)", path)
			}
			delete(sums, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range sums {
		t.Errorf("%s/%s is gone: stored events are never removed", storedDir, name)
	}
	slices.SortFunc(gens, func(a, b string) int { // v2 before v10
		return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
	})
	return gens
}

// loadGeneration reads a generation's files in name order: the order the
// events were written in.
func loadGeneration(t *testing.T, gen string) []storedFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(storedDir, gen, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	files := make([]storedFile, len(paths))
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&files[i]); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	return files
}

// record is the file as the event store returns it at pos.
func (f storedFile) record(t *testing.T, pos eventstore.Position, revision uint64) eventstore.RecordedEvent {
	t.Helper()
	id, err := uuid.Parse(f.ID)
	if err != nil {
		t.Fatalf("%s: id: %v", f.Note, err)
	}
	return eventstore.RecordedEvent{
		ID: id, Type: f.Type, Stream: f.Stream, Revision: revision, Position: pos,
		Created: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), Data: f.Data, Metadata: []byte(f.Metadata),
	}
}

// noLock is a key store's directory without its LOCK file, which Pebble
// makes on every open.
type noLock struct{ fs.FS }

func (n noLock) ReadDir(name string) ([]fs.DirEntry, error) {
	es, err := fs.ReadDir(n.FS, name)
	return slices.DeleteFunc(es, func(e fs.DirEntry) bool { return e.Name() == "LOCK" }), err
}

// openStoredKeys opens a copy of the key store kept with generation gen
// (Pebble writes to a database it opens); nil when the generation was
// written before sealing.
func openStoredKeys(t *testing.T, gen string) *seal.Events {
	t.Helper()
	src := filepath.Join(storedKeysDir, gen)
	if !fileExists(src) {
		return nil
	}
	dir := filepath.Join(t.TempDir(), "keys")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	keys, err := keystore.Open(dir, corpusKEK(t), keystore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the key store of %s: %v", gen, err)
	}
	t.Cleanup(func() { keys.Close() })
	return seal.NewEvents(keys)
}

// checkStored checks what one stored event must still say. personal opens
// the personal data of a generation written with sealing.
func checkStored(t *testing.T, gen string, f storedFile, rec eventstore.RecordedEvent, personal *seal.Events) {
	t.Helper()
	where := fmt.Sprintf("%s/%03d %s (%s)", gen, rec.Position, f.Type, f.Note)
	ev, err := eventcodec.Decode(rec)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	want := &callledgerv1.Event{}
	if err := protojson.Unmarshal(f.Decoded, want); err != nil {
		t.Errorf("%s: the event as written no longer parses: %v", where, err)
	} else if !proto.Equal(ev, want) {
		t.Errorf("%s decodes differently from when it was written:\n got %s\nwant %s", where, protoJSON(t, ev), f.Decoded)
	}

	// The facts the projection reads are the event without its request.
	facts, err := eventcodec.DecodeFacts(rec)
	if err != nil {
		t.Errorf("%s: DecodeFacts: %v", where, err)
	} else {
		bare := proto.CloneOf(ev)
		bare.Request, bare.CloudEvent, bare.SealedRequest = nil, nil, nil
		if !proto.Equal(facts, bare) {
			t.Errorf("%s: DecodeFacts:\n got %s\nwant %s", where, protoJSON(t, facts), protoJSON(t, bare))
		}
	}

	// Record metadata: ID, type name, stream.
	if ev.GetEventId() != rec.ID.String() {
		t.Errorf("%s: event_id %s in record %s", where, ev.GetEventId(), rec.ID)
	}
	if typ, err := eventcodec.TypeOf(ev); err != nil || typ != rec.Type {
		t.Errorf("%s: type %q, record type %q (%v)", where, typ, rec.Type, err)
	}
	if sid, ok := eventcodec.CallSidOf(rec.Stream); ok {
		if !eventcodec.ValidCallSid(sid) || ev.GetCallSid() != sid || ev.GetRequestQuarantined() != nil {
			t.Errorf("%s: call_sid %q in stream %s", where, ev.GetCallSid(), rec.Stream)
		}
	} else if cf, ok := eventcodec.ConferenceSidOf(rec.Stream); ok {
		if !eventcodec.ValidConferenceSid(cf) || ev.GetCallSid() != "" || ev.GetConferenceEventReported().GetConferenceSid() != cf {
			t.Errorf("%s: a %s event with call_sid %q in stream %s", where, rec.Type, ev.GetCallSid(), rec.Stream)
		}
	} else if e := ev.GetErasureRecorded(); e != nil {
		if rec.Stream != eventcodec.ErasureStream || ev.GetCallSid() != "" {
			t.Errorf("%s: an erasure in stream %s", where, rec.Stream)
		}
		if id := eventcodec.EventID(eventcodec.IDKindErasure, []byte(e.GetErasureId())); id.String() != ev.GetEventId() {
			t.Errorf("%s: erasure %s now has the ID %s", where, e.GetErasureId(), id)
		}
	} else if q := ev.GetRequestQuarantined(); q == nil || rec.Stream != eventcodec.QuarantineStream(q.GetKind()) || ev.GetCallSid() != "" {
		t.Errorf("%s: stream %s is neither its call's nor the quarantine of its kind", where, rec.Stream)
	}
	var meta struct{ CallSid, Source, ReceivedAt string }
	if err := json.Unmarshal(rec.Metadata, &meta); err != nil {
		t.Errorf("%s: metadata %s: %v", where, rec.Metadata, err)
	} else if at, err := time.Parse(time.RFC3339Nano, meta.ReceivedAt); err != nil || meta.CallSid != ev.GetCallSid() ||
		meta.Source != ev.GetSource().String() || !at.Equal(ev.GetReceivedAt().AsTime()) {
		t.Errorf("%s: metadata %s does not match the event", where, rec.Metadata)
	}

	// A generation written with sealing holds no personal field in the
	// clear, and opens to the event as derived.
	if personal != nil {
		if _, facts, request := eventcodec.Split(ev); facts != nil || request != nil {
			t.Errorf("%s: personal fields stored in the clear: %v %v", where, facts, request)
		}
		opened, err := personal.Open(t.Context(), ev)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if opened.Redacted {
			// An erased call's event (a generation with erasures): its
			// request is gone for good, so is what derives its ID again.
			if ev.GetRequest().GetUrl() != "" || len(ev.GetRequest().GetBody()) > 0 {
				t.Errorf("%s: redacted, yet its request opened", where)
			}
			return
		}
	}

	// An ID is what makes a retry a no-op, so it covers the same content
	// in every version: Twilio's retry of a stored request, or the
	// reconciler's next 404, must map to the stored ID.
	if r := ev.GetRequest(); r != nil {
		if !rederives(t, rec.Stream, ev) {
			t.Errorf("%s: its request no longer derives event %s in %s", where, ev.GetEventId(), rec.Stream)
		}
	} else if rc := ev.GetCallReconciled(); rc.GetNotFound() {
		if id := rest.NotFound(rc.GetAccountSid(), ev.GetCallSid(), time.Time{}).GetEventId(); id != ev.GetEventId() {
			t.Errorf("%s: a 404 of the same call now has the ID %s", where, id)
		}
	}
}

// rederives reports whether the verbatim request of ev, derived again,
// yields ev's ID in stream.
func rederives(t *testing.T, stream string, ev *callledgerv1.Event) bool {
	t.Helper()
	r := ev.GetRequest()
	u, err := url.Parse(r.GetUrl())
	if err != nil {
		t.Errorf("stored URL %q: %v", r.GetUrl(), err)
		return false
	}
	kind, ok := twilio.KindOfPath(u.Path)
	if !ok {
		kind = twilio.Kind(ev.GetRequestQuarantined().GetKind())
	}
	h := http.Header{}
	for _, l := range r.GetHeaders() {
		h.Add(l.GetName(), l.GetValue())
	}
	for _, d := range twilio.Derive(kind, &twilio.Request{
		Method: r.GetMethod(), URL: r.GetUrl(), RawQuery: u.RawQuery, ContentType: r.GetContentType(),
		Header: h, Body: r.GetBody(), RemoteAddr: r.GetRemoteAddr(), ReceivedAt: ev.GetReceivedAt().AsTime(),
	}) {
		if d.Stream == stream && d.Event.GetEventId() == ev.GetEventId() {
			return true
		}
	}
	return false
}

// checkFold folds a generation through the live projection's path (a
// callstore in a temporary directory, one batch) and compares every call
// with the generation's committed state, or writes that state.
func checkFold(t *testing.T, gen string, recs []eventstore.RecordedEvent, personal *seal.Events, write bool) {
	t.Helper()
	opts := callstore.Options{Logger: slog.New(slog.DiscardHandler)}
	if personal != nil {
		opts.Personal = personal
	}
	calls, err := callstore.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer calls.Close()
	if err := calls.Apply(t.Context(), eventstore.Batch{Events: recs, Checkpoint: recs[len(recs)-1].Position}); err != nil {
		t.Fatal(err)
	}
	var views []json.RawMessage
	if err := calls.Records(t.Context(), func(rec *statev1.CallRecord) error {
		views = append(views, protoJSON(t, callstate.View(rec)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	compareFolded(t, filepath.Join(foldedDir, gen+".json"), views, write, func() proto.Message { return &callledgerv1.Call{} })
	// Conferences, from the generation that first stored them on, in a
	// file of their own.
	var confs []json.RawMessage
	if err := calls.ConferenceRecords(t.Context(), func(rec *statev1.ConferenceRecord) error {
		confs = append(confs, protoJSON(t, callstate.ConferenceView(rec)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if path := filepath.Join(foldedDir, gen+".conferences.json"); len(confs) > 0 || fileExists(path) {
		compareFolded(t, path, confs, write, func() proto.Message { return &callledgerv1.Conference{} })
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// compareFolded compares the views a generation folds into with the file
// at path, or writes the file.
func compareFolded(t *testing.T, path string, views []json.RawMessage, write bool, newMsg func() proto.Message) {
	t.Helper()
	if write {
		if err := os.MkdirAll(foldedDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, indentedFile(t, views), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with -update-fold)", err)
	}
	var want []json.RawMessage
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: "+format+"\nStored events keep their meaning: if the projection changed on purpose, bump its version and rewrite the file with -update-fold (docs/EVENTS.md).", append([]any{path}, args...)...)
	}
	if len(views) != len(want) {
		fail("%d records, want %d", len(views), len(want))
		return
	}
	for i := range want {
		w, g := newMsg(), newMsg()
		if err := protojson.Unmarshal(want[i], w); err != nil {
			fail("record %d: %v", i, err)
		} else if err := protojson.Unmarshal(views[i], g); err != nil || !proto.Equal(g, w) {
			fail("record %d folds into\n%s\nwant\n%s", i, views[i], want[i])
		}
	}
}

// protoJSON is m as the corpus files spell it.
func protoJSON(t *testing.T, m proto.Message) json.RawMessage {
	t.Helper()
	b, err := golden.JSON(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// indentedFile is v as a committed JSON file: indented, HTML characters
// as they are.
func indentedFile(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// kebab spells a type name in lower case with dashes: DialCompleted →
// dial-completed.
func kebab(s string) string {
	var b strings.Builder
	for i, r := range s {
		if 'A' <= r && r <= 'Z' {
			if i > 0 {
				b.WriteByte('-')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
