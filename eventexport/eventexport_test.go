package eventexport

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/types/known/timestamppb"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventcodec"
	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
	"github.com/callledger/callledger/internal/rowfile"
	"github.com/callledger/callledger/keystore"
	"github.com/callledger/callledger/keystore/keystoretest"
	"github.com/callledger/callledger/seal"
)

// ledger is a real embedded store with realistic call history (status,
// Dial and recording callbacks with their verbatim requests), a hang-up
// that failed and a quarantined request.
func ledger(t *testing.T) (eventstore.Store, []eventstore.RecordedEvent) {
	t.Helper()
	ctx := context.Background()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := ledgerload.Load(ctx, store, ledgerload.Config{Events: 600, Seed: 3, Appenders: 8}); err != nil {
		t.Fatal(err)
	}
	now := timestamppb.Now()
	for _, ev := range []*callledgerv1.Event{
		{
			EventId: uuid.NewString(), CallSid: "CA0123456789abcdef0123456789abcdef", Source: callledgerv1.Source_SOURCE_HANGUP_REQUEST, ReceivedAt: now,
			Body: &callledgerv1.Event_HangupFailed{HangupFailed: &callledgerv1.HangupFailed{
				RequestId: "r1", Status: "completed", ErrorCode: 21220, HttpStatus: 400, ErrorMessage: "Call is not in-progress. Cannot redirect.",
			}},
		},
		{
			EventId: uuid.NewString(), Source: callledgerv1.Source_SOURCE_STATUS_CALLBACK, ReceivedAt: now,
			Body: &callledgerv1.Event_RequestQuarantined{RequestQuarantined: &callledgerv1.RequestQuarantined{Kind: "status", Reason: "no CallSid"}},
		},
	} {
		rec, err := eventcodec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		stream := eventcodec.QuarantineStream("status")
		if ev.CallSid != "" {
			stream = eventcodec.CallStream(ev.CallSid)
		}
		if _, err := store.Append(ctx, stream, eventstore.Any(), rec); err != nil {
			t.Fatal(err)
		}
	}
	var all []eventstore.RecordedEvent
	for from := eventstore.Start; ; {
		recs, err := store.ReadAll(ctx, from, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		all = append(all, recs...)
		from = recs[len(recs)-1].Position
	}
	return store, all
}

func export(t *testing.T, store eventstore.Store, format string, opts Options) ([]byte, int) {
	t.Helper()
	var buf bytes.Buffer
	e, err := New(format, &buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Export(context.Background(), store); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), e.Rows()
}

func readParquet(t *testing.T, b []byte) []Row {
	t.Helper()
	rows, err := parquet.Read[Row](bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// jsonOf renders rows the one way, so that formats can be compared.
func jsonOf(t *testing.T, rows []Row) []string {
	t.Helper()
	var out []string
	for _, r := range rows {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func TestExportEveryFormat(t *testing.T) {
	store, all := ledger(t)
	for _, include := range []bool{false, true} {
		opts := Options{}
		if include {
			// Events stored in the clear: nothing to open.
			opts.Personal = Open(seal.NewEvents(keystoretest.Open(t)))
		}
		pq, n := export(t, store, "parquet", opts)
		if n != len(all) {
			t.Fatalf("parquet: %d rows, the log has %d events", n, len(all))
		}
		rows := readParquet(t, pq)
		if len(rows) != len(all) {
			t.Fatalf("parquet read back: %d rows, want %d", len(rows), len(all))
		}
		var statuses, delays, personal, quarantined, failed int
		for i, r := range rows {
			rec := all[i]
			ev, err := eventcodec.DecodeFacts(rec)
			if err != nil {
				t.Fatal(err)
			}
			if r.Position != int64(rec.Position) || r.Stream != rec.Stream || r.Type != rec.Type || r.EventID != rec.ID.String() {
				t.Fatalf("row %d: %+v, want the event at position %d", i, r, rec.Position)
			}
			if sid, ok := eventcodec.CallSidOf(rec.Stream); ok && r.CallSid != sid {
				t.Errorf("row %d: call_sid %q in stream %s", i, r.CallSid, rec.Stream)
			}
			if r.ReceivedAt == nil || !r.ReceivedAt.Equal(ev.GetReceivedAt().AsTime()) {
				t.Errorf("row %d: received_at %v, want %v", i, r.ReceivedAt, ev.GetReceivedAt().AsTime())
			}
			if r.ReportedAt != nil {
				delays++
				if want := ev.GetReceivedAt().AsTime().Sub(ev.GetReportedAt().AsTime()).Seconds(); r.DeliveryDelaySeconds == nil || *r.DeliveryDelaySeconds != want {
					t.Errorf("row %d: delivery delay %v, want %v", i, r.DeliveryDelaySeconds, want)
				}
			}
			if csr := ev.GetCallStatusReported(); csr != nil {
				statuses++
				if r.Status == "" || r.Status != csr.GetStatusRaw() || r.Source == "" {
					t.Errorf("row %d: status %q source %q, want %q", i, r.Status, r.Source, csr.GetStatusRaw())
				}
				if include && (r.From == nil || *r.From != csr.GetFrom()) {
					t.Errorf("row %d: from %v, want %q", i, r.From, csr.GetFrom())
				}
			}
			if r.From != nil || r.To != nil || r.RecordingURL != nil || r.ErrorMessage != nil {
				personal++
			}
			if r.QuarantineKind == "status" && r.QuarantineReason == "no CallSid" && r.CallSid == "" {
				quarantined++
			}
			if r.Type == eventcodec.TypeHangupFailed {
				failed++
				if r.ErrorCode != "21220" || r.HTTPStatus == nil || *r.HTTPStatus != 400 {
					t.Errorf("hang-up failure row: %+v", r)
				}
				if include != (r.ErrorMessage != nil) {
					t.Errorf("hang-up failure's message exported %t with personal data %t", r.ErrorMessage != nil, include)
				}
			}
		}
		if statuses == 0 || delays == 0 || quarantined != 1 || failed != 1 {
			t.Errorf("status rows %d, rows with a delay %d, quarantined %d, failed hang-ups %d", statuses, delays, quarantined, failed)
		}
		if include != (personal > 0) {
			t.Errorf("personal data asked for: %t; rows with personal fields: %d", include, personal)
		}

		// JSON Lines and CSV hold the same rows.
		jl, _ := export(t, store, "jsonl", opts)
		var fromJSON []Row
		dec := json.NewDecoder(bytes.NewReader(jl))
		for dec.More() {
			var r Row
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			fromJSON = append(fromJSON, r)
		}
		if !slices.Equal(jsonOf(t, fromJSON), jsonOf(t, rows)) {
			t.Error("jsonl and parquet rows differ")
		}
		c, _ := export(t, store, "csv", opts)
		records, err := csv.NewReader(bytes.NewReader(c)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(records[0], Columns) {
			t.Fatalf("csv header %v, want %v", records[0], Columns)
		}
		if len(records)-1 != len(rows) {
			t.Fatalf("csv: %d rows, want %d", len(records)-1, len(rows))
		}
		var rendered bytes.Buffer
		w, err := rowfile.New[Row]("csv", &rendered)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if err := w.Write(&r); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		want, err := csv.NewReader(&rendered).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for i := range rows {
			if !slices.Equal(records[i+1], want[i+1]) {
				t.Fatalf("csv row %d: %v, parquet row renders %v", i, records[i+1], want[i+1])
			}
		}
	}
}

func TestExportTimeBounds(t *testing.T) {
	store, all := ledger(t)
	var times []time.Time
	for _, rec := range all {
		ev, err := eventcodec.DecodeFacts(rec)
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, ev.GetReceivedAt().AsTime())
	}
	sorted := slices.SortedFunc(slices.Values(times), time.Time.Compare)
	since, until := sorted[len(sorted)/4], sorted[3*len(sorted)/4]
	want := 0
	for _, tm := range times {
		if !tm.Before(since) && tm.Before(until) {
			want++
		}
	}
	pq, n := export(t, store, "parquet", Options{Since: since, Until: until})
	if n != want || want == 0 {
		t.Fatalf("%d rows between %v and %v, want %d", n, since, until, want)
	}
	for _, r := range readParquet(t, pq) {
		if r.ReceivedAt.Before(since) || !r.ReceivedAt.Before(until) {
			t.Errorf("row at %v outside [%v, %v)", r.ReceivedAt, since, until)
		}
	}
}

// TestErasedSubjectsGiveNulls: a Personal that reports a subject erased
// leaves its rows' personal columns null and the rest as they are.
func TestErasedSubjectsGiveNulls(t *testing.T) {
	store, _ := ledger(t)
	erased := ""
	opts := Options{Personal: func(_ context.Context, ev *callledgerv1.Event) (bool, error) {
		if erased == "" && ev.GetCallStatusReported().GetFrom() != "" {
			erased = ev.GetCallSid()
		}
		return ev.GetCallSid() != erased, nil
	}}
	pq, _ := export(t, store, "parquet", opts)
	var erasedRows, kept int
	for _, r := range readParquet(t, pq) {
		switch {
		case r.CallSid == erased:
			erasedRows++
			if r.From != nil || r.To != nil || r.RecordingURL != nil || r.Status == "" && r.Type == eventcodec.TypeCallStatusReported {
				t.Errorf("erased call's row: %+v", r)
			}
		case r.From != nil:
			kept++
		}
	}
	if erasedRows == 0 || kept == 0 {
		t.Errorf("rows of the erased call %d, other rows with numbers %d", erasedRows, kept)
	}
}

// TestParquetSchema pins what DuckDB and pandas see: the columns in
// order, times as timestamps, nullable columns optional.
func TestParquetSchema(t *testing.T) {
	store, _ := ledger(t)
	pq, _ := export(t, store, "parquet", Options{})
	path := filepath.Join(t.TempDir(), "events.parquet")
	if err := os.WriteFile(path, pq, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Stat()
	pf, err := parquet.OpenFile(f, info.Size())
	if err != nil {
		t.Fatal(err)
	}
	fields := pf.Schema().Fields()
	var names []string
	for _, fl := range fields {
		names = append(names, fl.Name())
	}
	if !slices.Equal(names, Columns) {
		t.Fatalf("columns %v, want %v", names, Columns)
	}
	for _, fl := range fields {
		typ := fl.Type().String()
		switch {
		case strings.HasSuffix(fl.Name(), "_at") || strings.HasSuffix(fl.Name(), "_time"):
			if !strings.Contains(strings.ToUpper(typ), "TIMESTAMP") || !fl.Optional() {
				t.Errorf("%s: %s optional %t, want an optional timestamp", fl.Name(), typ, fl.Optional())
			}
		case slices.Contains(PersonalColumns, fl.Name()):
			if !fl.Optional() {
				t.Errorf("%s is not optional", fl.Name())
			}
		}
	}
	if n := pf.NumRows(); n == 0 {
		t.Error("no rows")
	}
}

// TestExportSealed: a sealed ledger exports the personal columns of the
// plaintext ledger it was sealed from, opened, except an erased call's,
// which are null; without asking for them, nothing is opened.
func TestExportSealed(t *testing.T) {
	ctx := context.Background()
	cfg := ledgerload.Config{Events: 400, Seed: 5, Appenders: 1, Workers: 1, Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
	plain, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	if _, err := ledgerload.Load(ctx, plain, cfg); err != nil {
		t.Fatal(err)
	}
	sealed, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sealed.Close() })
	keys := keystoretest.Open(t)
	cfg.Sealer = seal.NewEvents(keys)
	if _, err := ledgerload.Load(ctx, sealed, cfg); err != nil {
		t.Fatal(err)
	}
	byID := func(b []byte) map[string]Row {
		out := map[string]Row{}
		dec := json.NewDecoder(bytes.NewReader(b))
		for dec.More() {
			var r Row
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			out[r.EventID] = r
		}
		return out
	}
	want := byID(first(export(t, plain, "jsonl", Options{Personal: Open(seal.NewEvents(keystoretest.Open(t)))})))
	var erased string
	for _, r := range want {
		if r.From != nil && r.CallSid != "" {
			erased = r.CallSid
			break
		}
	}
	if erased == "" {
		t.Fatal("no event with a number")
	}
	if _, err := keys.Destroy(ctx, erased); err != nil {
		t.Fatal(err)
	}
	got := byID(first(export(t, sealed, "jsonl", Options{Personal: Open(seal.NewEvents(keys))})))
	none := byID(first(export(t, sealed, "jsonl", Options{})))
	if len(got) != len(want) || len(none) != len(want) {
		t.Fatalf("%d rows sealed, %d plain", len(got), len(want))
	}
	nulls := 0
	for id, w := range want {
		g, n := got[id], none[id]
		if n.From != nil || n.To != nil || n.RecordingURL != nil {
			t.Errorf("event %s: personal columns without asking: %+v", id, n)
		}
		if g.CallSid == erased {
			if g.From != nil || g.To != nil || g.RecordingURL != nil || g.ErrorMessage != nil {
				t.Errorf("event %s of the erased call: %+v, want null personal columns", id, g)
			}
			nulls++
			g.From, g.To, g.RecordingURL, g.ErrorMessage = w.From, w.To, w.RecordingURL, w.ErrorMessage
		}
		if jsonOf(t, []Row{g})[0] != jsonOf(t, []Row{w})[0] {
			t.Errorf("event %s:\n%s\nwant\n%s", id, jsonOf(t, []Row{g})[0], jsonOf(t, []Row{w})[0])
		}
	}
	if nulls == 0 {
		t.Error("no row of the erased call")
	}
	// A key store that never had the keys is an error, never nulls.
	e, err := New("jsonl", io.Discard, Options{Personal: Open(seal.NewEvents(keystoretest.Open(t)))})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Export(ctx, sealed); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("export with another key store: %v, want ErrNotFound", err)
	}
}

func first(b []byte, _ int) []byte { return b }
