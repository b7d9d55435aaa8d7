package residue

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/callledger/callledger/internal/pebblelog"
)

func names(ns []Needle) map[string]string {
	m := map[string]string{}
	for _, n := range ns {
		m[n.Name] = string(n.Bytes)
	}
	return m
}

func TestPhoneNumberEncodings(t *testing.T) {
	got := names(PhoneNumber("+15555550100"))
	want := map[string]string{
		"E.164":                    "+15555550100",
		"URL-encoded":              "%2B15555550100",
		"URL-encoded (lower case)": "%2b15555550100",
		"digits":                   "15555550100",
		"national":                 "5555550100",
		"NANP formatted":           "(555) 555-0100",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("needles %v, want %v", got, want)
	}
	for number, national := range map[string]string{
		"+442079460000":  "2079460000",  // UK, two-digit code
		"+35312345678":   "12345678",    // Ireland, three-digit code
		"+79161234567":   "9161234567",  // Russia, one digit
		"+8613800138000": "13800138000", // China
	} {
		n := names(PhoneNumber(number))
		if n["national"] != national {
			t.Errorf("%s: national %q, want %q", number, n["national"], national)
		}
		if _, ok := n["NANP formatted"]; ok {
			t.Errorf("%s: a NANP format for a number outside +1", number)
		}
	}
	for _, bad := range []string{"15555550100", "+1555", "+1555555010x", ""} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("PhoneNumber(%q) did not panic", bad)
				}
			}()
			PhoneNumber(bad)
		}()
	}
}

func TestFindRawFiles(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	body := []byte("CallSid=CA1&From=%2B15555550100&To=%2B15555550199&From=%2B15555550100")
	if err := os.WriteFile(filepath.Join(sub, "request"), body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "clean"), []byte("nothing here +1555555"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := []byte{0, 1, 2, 3, 250, 251}
	if err := os.WriteFile(filepath.Join(dir, "key"), append([]byte("xx"), secret...), 0o600); err != nil {
		t.Fatal(err)
	}
	hits, err := Find(dir, append(PhoneNumber("+15555550100"), Bytes("key", secret))...)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hits {
		got = append(got, h.String())
	}
	want := []string{
		filepath.Join("a", "b", "request") + ": URL-encoded at raw offset 17",
		filepath.Join("a", "b", "request") + ": URL-encoded at raw offset 55",
		filepath.Join("a", "b", "request") + ": digits at raw offset 20",
		filepath.Join("a", "b", "request") + ": digits at raw offset 58",
		filepath.Join("a", "b", "request") + ": national at raw offset 21",
		filepath.Join("a", "b", "request") + ": national at raw offset 59",
		"key: key at raw offset 2",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("hits:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFindInCompressedTable stores a number that a compressed block holds
// only as back-references to earlier bytes: only the decoded search finds
// it whole.
func TestFindInCompressedTable(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebblelog.New(slog.New(slog.DiscardHandler), 0)})
	if err != nil {
		t.Fatal(err)
	}
	// Pieces of the number appear first, so that the encoder copies them.
	var v bytes.Buffer
	for range 20 {
		v.WriteString("q+1555555r:s50100t;")
	}
	v.WriteString("From=+15555550100;")
	if err := db.Set([]byte("event"), v.Bytes(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("key+15555550100"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// The WAL holds the value verbatim; look at the tables alone.
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		if err := os.Remove(l); err != nil {
			t.Fatal(err)
		}
	}
	hits, err := Find(dir, Needle{"E.164", []byte("+15555550100")})
	if err != nil {
		t.Fatal(err)
	}
	var key, value, raw int
	for _, h := range hits {
		switch {
		case h.Where == "sst key" && strings.HasSuffix(h.File, ".sst"):
			key++
		case h.Where == "sst value" && strings.HasSuffix(h.File, ".sst"):
			value++
		case h.Where == "raw":
			raw++
		}
	}
	if key != 1 || value != 1 {
		t.Errorf("decoded hits: %d in keys, %d in values, want 1 and 1 (all hits: %v)", key, value, hits)
	}
	t.Logf("raw hits: %d (the key is stored verbatim; the value's number only as copies)", raw)
}

// TestFindWaitsForATableBeingWritten: a table that does not parse yet (cut
// short, as one Pebble is still writing) is read again until it does, so
// that a search of a running store neither fails nor misses it; one that
// never parses is an error.
func TestFindWaitsForATableBeingWritten(t *testing.T) {
	src := t.TempDir()
	db, err := pebble.Open(src, &pebble.Options{Logger: pebblelog.New(slog.New(slog.DiscardHandler), 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("key"), []byte("From=+15555550100"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(src, "*.sst"))
	if len(tables) != 1 {
		t.Fatalf("tables: %v", tables)
	}
	whole, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "000009.sst")
	if err := os.WriteFile(path, whole[:len(whole)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		written <- os.WriteFile(path, whole, 0o600)
	}()
	hits, err := Find(dir, Needle{"E.164", []byte("+15555550100")})
	if werr := <-written; werr != nil {
		t.Fatal(werr)
	}
	if err != nil {
		t.Fatalf("Find on a table finished during the search: %v", err)
	}
	if !slices.ContainsFunc(hits, func(h Hit) bool { return h.Where == "sst value" }) {
		t.Errorf("hits %v: the finished table's value was not searched", hits)
	}

	if err := os.WriteFile(path, whole[:len(whole)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(dir, Needle{"E.164", []byte("+15555550100")}); err == nil || !strings.Contains(err.Error(), "000009.sst") {
		t.Errorf("Find on a table that never parses: %v, want an error naming it", err)
	}
}
