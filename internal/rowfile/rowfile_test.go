package rowfile

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

type row struct {
	Name  string     `parquet:"name" json:"name"`
	Count *int64     `parquet:"count,optional" json:"count"`
	Ratio float64    `parquet:"ratio" json:"ratio"`
	Code  int32      `parquet:"code" json:"code"`
	Ok    bool       `parquet:"ok" json:"ok"`
	At    *time.Time `parquet:"at,optional,timestamp(nanosecond)" json:"at"`
}

func rows() []row {
	n := int64(7)
	at := time.Date(2026, 12, 7, 14, 0, 0, 123, time.UTC)
	return []row{
		{Name: "a<&>b", Count: &n, Ratio: 0.25, Code: 404, Ok: true, At: &at},
		{Name: "", Count: nil, Ratio: 0, Code: 0, Ok: false, At: nil},
	}
}

func write(t *testing.T, format string, rs []row) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := New[row](format, &buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		if err := w.Write(&rs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestColumns(t *testing.T) {
	if got, want := Columns[row](), []string{"name", "count", "ratio", "code", "ok", "at"}; !slices.Equal(got, want) {
		t.Fatalf("Columns = %v, want %v", got, want)
	}
}

func TestEveryFormatReadsBack(t *testing.T) {
	want := rows()

	// Parquet across more than one batch.
	var many []row
	for range parquetBatch + 10 {
		many = append(many, want...)
	}
	p := write(t, "parquet", many)
	got, err := parquet.Read[row](bytes.NewReader(p), int64(len(p)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(many) {
		t.Fatalf("parquet: %d rows, want %d", len(got), len(many))
	}
	for i := range many {
		if a, b := jsonOf(t, got[i]), jsonOf(t, many[i]); a != b {
			t.Fatalf("parquet row %d = %s, want %s", i, a, b)
		}
	}

	c, err := csv.NewReader(bytes.NewReader(write(t, "csv", want))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantCSV := [][]string{
		Columns[row](),
		{"a<&>b", "7", "0.25", "404", "true", "2026-12-07T14:00:00.000000123Z"},
		{"", "", "0", "0", "false", ""},
	}
	if !slices.EqualFunc(c, wantCSV, slices.Equal) {
		t.Fatalf("csv = %q, want %q", c, wantCSV)
	}

	lines := strings.Split(strings.TrimSpace(string(write(t, "jsonl", want))), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"a<&>b"`) {
		t.Fatalf("jsonl = %q: want two lines, HTML characters unescaped", lines)
	}
	for i, l := range lines {
		var r row
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if a, b := jsonOf(t, r), jsonOf(t, want[i]); a != b {
			t.Fatalf("jsonl row %d = %s, want %s", i, a, b)
		}
	}
}

func TestRefusals(t *testing.T) {
	if _, err := New[row]("xlsx", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "want parquet, csv or jsonl") {
		t.Errorf("unknown format: err = %v", err)
	}
	type bad struct {
		Tags []string `json:"tags"`
	}
	if _, err := New[bad]("csv", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "Tags") {
		t.Errorf("unsupported column type: err = %v", err)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
