package callexport_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	"github.com/callledger/callledger/eventstore/pebblestore"
	"github.com/callledger/callledger/internal/ledgerload"
	"github.com/callledger/callledger/projections/callexport"
	"github.com/callledger/callledger/projections/rebuild"
)

// records folds a small realistic ledger, sorted by CallSid.
func records(t *testing.T) []*statev1.CallRecord {
	t.Helper()
	ctx := context.Background()
	store, err := pebblestore.Open(t.TempDir(), pebblestore.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := ledgerload.Load(ctx, store, ledgerload.Config{Events: 2000, Seed: 9, CallsPerChunk: 100,
		Start: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	res, err := rebuild.Fold(ctx, store, rebuild.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*statev1.CallRecord
	if err := res.Calls(func(r *statev1.CallRecord) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return recs
}

func export(t *testing.T, format string, f callexport.Filter, recs []*statev1.CallRecord) ([]byte, []callexport.Row) {
	t.Helper()
	var buf bytes.Buffer
	e, err := callexport.New(format, &buf, f)
	if err != nil {
		t.Fatal(err)
	}
	var want []callexport.Row
	for _, r := range recs {
		if err := e.Add(r); err != nil {
			t.Fatal(err)
		}
		if row := callexport.RowOf(r); f.Match(viewOf(r)) {
			want = append(want, row)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e.Rows() != len(want) {
		t.Fatalf("%s: %d rows written, want %d", format, e.Rows(), len(want))
	}
	return buf.Bytes(), want
}

// TestEveryFormatReadsBack writes each format and reads it back with an
// independent reader: the rows must be the expected ones, column for
// column, nulls included.
func TestEveryFormatReadsBack(t *testing.T) {
	recs := records(t)
	for _, format := range callexport.Formats {
		t.Run(format, func(t *testing.T) {
			data, want := export(t, format, callexport.Filter{}, recs)
			if len(want) != len(recs) {
				t.Fatalf("unfiltered export kept %d of %d", len(want), len(recs))
			}
			got := readBack(t, format, data)
			checkRows(t, got, want)
		})
	}
}

// TestFilters checks --active-only and the start-time window.
func TestFilters(t *testing.T) {
	recs := records(t)
	// Every generated call ended; reopen some, as if their end were not
	// known yet.
	for i, r := range recs {
		if i%3 == 0 && r.GetNonterminal() != nil {
			r.Terminal = nil
		}
	}
	active := 0
	var starts []time.Time
	for _, r := range recs {
		row := callexport.RowOf(r)
		if row.Status != "" && !row.Terminal {
			active++
		}
		starts = append(starts, *row.StartTime)
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	if active == 0 || active == len(recs) {
		t.Fatalf("fixture has %d active calls of %d; want some of each", active, len(recs))
	}
	_, got := export(t, "parquet", callexport.Filter{ActiveOnly: true}, recs)
	if len(got) != active {
		t.Errorf("active-only: %d rows, want %d", len(got), active)
	}
	since, until := starts[len(starts)/4], starts[len(starts)/2]
	data, want := export(t, "csv", callexport.Filter{Since: since, Until: until}, recs)
	rows := readBack(t, "csv", data)
	checkRows(t, rows, want)
	for _, r := range rows {
		if r.StartTime.Before(since) || !r.StartTime.Before(until) {
			t.Errorf("%s started %s, outside [%s, %s)", r.CallSid, r.StartTime, since, until)
		}
	}
	if n := countIn(starts, since, until); len(rows) != n || n == 0 {
		t.Errorf("window kept %d rows, want %d (non-zero)", len(rows), n)
	}
}

func countIn(ts []time.Time, since, until time.Time) int {
	n := 0
	for _, t := range ts {
		if !t.Before(since) && t.Before(until) {
			n++
		}
	}
	return n
}

func readBack(t *testing.T, format string, data []byte) []callexport.Row {
	t.Helper()
	switch format {
	case "parquet":
		rows, err := parquet.Read[callexport.Row](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, c := range f.Schema().Fields() {
			cols = append(cols, c.Name())
		}
		if !slices.Equal(cols, callexport.Columns) {
			t.Errorf("parquet columns %v, want %v", cols, callexport.Columns)
		}
		return rows
	case "csv":
		lines, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(lines[0], callexport.Columns) {
			t.Fatalf("csv header %v", lines[0])
		}
		var rows []callexport.Row
		for _, l := range lines[1:] {
			rows = append(rows, parseCSV(t, l))
		}
		return rows
	case "jsonl":
		var rows []callexport.Row
		dec := json.NewDecoder(bytes.NewReader(data))
		for dec.More() {
			var r callexport.Row
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			rows = append(rows, r)
		}
		if n := bytes.Count(data, []byte("\n")); n != len(rows) {
			t.Errorf("%d lines for %d rows", n, len(rows))
		}
		return rows
	}
	t.Fatalf("format %s", format)
	return nil
}

// parseCSV reads a CSV line back into a Row by column name.
func parseCSV(t *testing.T, l []string) callexport.Row {
	t.Helper()
	var r callexport.Row
	v := reflect.ValueOf(&r).Elem()
	for i, name := range callexport.Columns {
		f := fieldByTag(v, name)
		s := l[i]
		if s == "" && f.Kind() == reflect.Pointer {
			continue
		}
		if f.Kind() == reflect.Pointer {
			f.Set(reflect.New(f.Type().Elem()))
			f = f.Elem()
		}
		switch f.Interface().(type) {
		case string:
			f.SetString(s)
		case bool:
			b, err := strconv.ParseBool(s)
			if err != nil {
				t.Fatal(err)
			}
			f.SetBool(b)
		case int32, int64:
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			f.SetInt(n)
		case time.Time:
			tm, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				t.Fatal(err)
			}
			f.Set(reflect.ValueOf(tm))
		}
	}
	return r
}

func fieldByTag(v reflect.Value, name string) reflect.Value {
	for i := range v.NumField() {
		if tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ","); tag == name {
			return v.Field(i)
		}
	}
	panic("no column " + name)
}

func checkRows(t *testing.T, got, want []callexport.Row) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows read back, want %d", len(got), len(want))
	}
	for i := range want {
		if !rowEqual(got[i], want[i]) {
			t.Fatalf("row %d:\ngot  %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// rowEqual compares rows, times by instant.
func rowEqual(a, b callexport.Row) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		fa, fb := va.Field(i), vb.Field(i)
		if ta, ok := fa.Interface().(*time.Time); ok {
			tb := fb.Interface().(*time.Time)
			if (ta == nil) != (tb == nil) || (ta != nil && !ta.Equal(*tb)) {
				return false
			}
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			return false
		}
	}
	return true
}
