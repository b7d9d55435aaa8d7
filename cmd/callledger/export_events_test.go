package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/callledger/callledger/eventexport"
	"github.com/callledger/callledger/internal/residue"
)

// TestExportEvents drives `callledger export events` on a loaded data
// directory: every format holds one row per event, personal columns only
// when asked for, and `export` without a subcommand still exports calls.
func TestExportEvents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := cli(t, "load", "--data-dir", dir, "--events", "1500", "--seed", "9"); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	pq := filepath.Join(dir, "events.parquet")
	if _, err := cli(t, "export", "events", "--data-dir", dir, "--format", "parquet", "--out", pq); err != nil {
		t.Fatal(err)
	}
	rows, err := parquet.ReadFile[eventexport.Row](pq)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 1500 {
		t.Fatalf("%d rows, want one per event (at least 1500)", len(rows))
	}
	for i, r := range rows {
		if r.Position <= 0 || (i > 0 && r.Position <= rows[i-1].Position) || r.Type == "" || r.ReceivedAt == nil {
			t.Fatalf("row %d: %+v", i, r)
		}
		if r.From != nil || r.To != nil {
			t.Fatalf("row %d holds a number without --include-personal: %+v", i, r)
		}
	}

	jl := filepath.Join(dir, "events.jsonl")
	if _, err := cli(t, "export", "events", "--data-dir", dir, "--format", "jsonl", "--out", jl, "--include-personal"); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(jl)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, withFrom := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r eventexport.Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Position != rows[n].Position {
			t.Fatalf("jsonl row %d at position %d, parquet's at %d", n, r.Position, rows[n].Position)
		}
		if r.From != nil && strings.HasPrefix(*r.From, "+") {
			withFrom++
		}
		n++
	}
	if n != len(rows) || withFrom == 0 {
		t.Errorf("jsonl: %d rows (want %d), %d with a number", n, len(rows), withFrom)
	}

	out, err := cli(t, "export", "events", "--data-dir", dir, "--format", "csv", "--out", "-",
		"--since", rows[len(rows)/2].ReceivedAt.Format("2006-01-02T15:04:05.999999999Z07:00"))
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) < 2 || len(records)-1 >= len(rows) || strings.Join(records[0], ",") != strings.Join(eventexport.Columns, ",") {
		t.Errorf("csv --since: %d rows of %d, header %v", len(records)-1, len(rows), records[0])
	}

	// `export` alone is the calls export, as before.
	calls, err := cli(t, "export", "--data-dir", dir, "--format", "csv", "--out", "-", "--from-ledger")
	if err != nil || !strings.HasPrefix(calls, "call_sid,account_sid,") {
		t.Errorf("export of calls: %v, %.60q", err, calls)
	}
	for _, bad := range [][]string{
		{"export", "events", "--data-dir", dir, "--format", "xml", "--out", "-"},
		{"export", "events", "--data-dir", dir, "--format", "parquet", "--out", "-"},
		{"export", "events", "--data-dir", dir},
		{"export", "events", "--data-dir", dir, "--out", "-", "--format", "csv", "--since", "yesterday"},
	} {
		if _, err := cli(t, bad...); err == nil {
			t.Errorf("callledger %s: no error", strings.Join(bad, " "))
		}
	}

	duckdbReads(t, pq, len(rows))
}

// duckdbReads has DuckDB read the Parquet file, when DuckDB's Node.js
// package is installed (`make duckdb`), and checks the row count and a
// query of docs/ANALYSTS.md.
func duckdbReads(t *testing.T, path string, rows int) {
	t.Helper()
	modules, err := filepath.Abs(filepath.Join("..", "..", ".tmp", "duckdb", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(filepath.Join(modules, "@duckdb", "node-api")); err != nil || statErr != nil {
		if os.Getenv("CALLLEDGER_REQUIRE_DUCKDB") != "" {
			t.Fatalf("DuckDB required but not installed (make duckdb): %v %v", err, statErr)
		}
		t.Log("DuckDB's Node.js package is not installed (make duckdb): the Parquet file was checked with parquet-go only")
		return
	}
	// The count, and every query of docs/ANALYSTS.md on this file.
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "ANALYSTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	queries := []string{"SELECT count(*)::INTEGER AS n, count(DISTINCT call_sid)::INTEGER AS calls, min(received_at)::VARCHAR AS first FROM 'events.parquet'"}
	for _, block := range strings.Split(string(doc), "```sql\n")[1:] {
		queries = append(queries, strings.Split(block, "```")[0])
	}
	if len(queries) < 4 {
		t.Fatalf("docs/ANALYSTS.md has %d queries", len(queries)-1)
	}
	for i, q := range queries {
		queries[i] = strings.ReplaceAll(q, "'events.parquet'", "read_parquet('"+path+"')")
	}
	qs, _ := json.Marshal(queries)
	script := `
const { DuckDBInstance } = require('@duckdb/node-api');
(async () => {
  const db = await DuckDBInstance.create(':memory:');
  const c = await db.connect();
  const results = [];
  for (const q of JSON.parse(process.env.CALLLEDGER_QUERIES)) {
    results.push((await c.runAndReadAll(q)).getRowObjectsJson());
  }
  console.log(JSON.stringify(results));
})().catch(e => { console.error(e); process.exit(1); });
`
	cmd := exec.Command(node, "-e", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "CALLLEDGER_QUERIES="+string(qs))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("DuckDB: %v\n%s", err, out)
	}
	var got []json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(queries) {
		t.Fatalf("DuckDB printed %s: %v", out, err)
	}
	var count []struct {
		N     int    `json:"n"`
		Calls int    `json:"calls"`
		First string `json:"first"`
	}
	if err := json.Unmarshal(got[0], &count); err != nil {
		t.Fatal(err)
	}
	if len(count) != 1 || count[0].N != rows || count[0].Calls == 0 || count[0].First == "" {
		t.Fatalf("DuckDB read %s, want %s rows", got[0], strconv.Itoa(rows))
	}
	for i, r := range got[1:3] { // answer rate, delays: rows in any history
		if string(r) == "[]" {
			t.Errorf("query %d of docs/ANALYSTS.md found nothing", i+1)
		}
	}
	t.Logf("DuckDB read %s and ran the %d queries of docs/ANALYSTS.md", got[0], len(queries)-1)
}

// TestResidueSeesALedgersNumbers: on a ledger stored in the clear (as
// every ledger is until sealing), the erasure proof finds a caller's number
// in the event log's files, URL-encoded as Twilio posts it. The erasure
// tests assert the opposite after an erasure; this shows the search sees
// the real store's files.
func TestResidueSeesALedgersNumbers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if out, err := cli(t, "load", "--data-dir", dir, "--events", "400", "--seed", "2"); err != nil {
		t.Fatalf("load: %v\n%s", err, out)
	}
	out, err := cli(t, "export", "events", "--data-dir", dir, "--format", "jsonl", "--out", "-", "--include-personal")
	if err != nil {
		t.Fatal(err)
	}
	var number string
	for _, line := range strings.Split(out, "\n") {
		var r eventexport.Row
		if json.Unmarshal([]byte(line), &r) == nil && r.From != nil && strings.HasPrefix(*r.From, "+1") {
			number = *r.From
			break
		}
	}
	if number == "" {
		t.Fatal("no caller number in the export")
	}
	hits, err := residue.Find(dir, residue.PhoneNumber(number)...)
	if err != nil {
		t.Fatal(err)
	}
	byNeedle := map[string]int{}
	for _, h := range hits {
		if strings.HasPrefix(h.File, "ledger") {
			byNeedle[h.Needle]++
		}
	}
	if byNeedle["URL-encoded"] == 0 || byNeedle["E.164"] == 0 || byNeedle["national"] == 0 {
		t.Errorf("hits of %s in the ledger by encoding: %v", number, byNeedle)
	}
}
