package erasure_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callledger/callledger/erasure"
)

func entry(id string, subjects ...string) erasure.Entry {
	return erasure.Entry{ID: id, At: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), By: "dpo@example.com", Subjects: subjects}
}

func sameEntries(a, b []erasure.Entry) bool {
	return slices.EqualFunc(a, b, func(x, y erasure.Entry) bool {
		return x.ID == y.ID && x.At.Equal(y.At) && x.By == y.By && slices.Equal(x.Subjects, y.Subjects)
	})
}

// TestJournalRoundTrip: what Append writes, OpenJournal reads back, one
// line per entry; a torn last line (a crash mid-write, never
// acknowledged) is cut off, and the next entry starts a line of its own.
func TestJournalRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "erasures.jsonl")
	j, got, err := erasure.OpenJournal(path)
	if err != nil || len(got) != 0 {
		t.Fatalf("new journal: %v, %v", got, err)
	}
	want := []erasure.Entry{entry("e1", "CA"+strings.Repeat("1", 32)), entry("e2", "CA"+strings.Repeat("2", 32), "quarantine:x")}
	for _, e := range want {
		if err := j.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if !j.Has("e2") || j.Has("e3") {
		t.Error("Has does not know what was appended")
	}
	j.Close()
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode: %v, %v", info, err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"torn","at":"2026-03-01T10:00:00Z","by":"x","subj`)
	f.Close()

	j, got, err = erasure.OpenJournal(path)
	if err != nil || !sameEntries(got, want) {
		t.Fatalf("reopened: %v, %v; want %v", got, err, want)
	}
	third := entry("e3", "CA"+strings.Repeat("3", 32))
	if err := j.Append(third); err != nil {
		t.Fatal(err)
	}
	j.Close()
	b, _ := os.ReadFile(path)
	if bytes.Contains(b, []byte("torn")) || bytes.Count(b, []byte("\n")) != 3 {
		t.Fatalf("journal after a torn line:\n%s", b)
	}
	if _, got, err = erasure.OpenJournal(path); err != nil || !sameEntries(got, append(want, third)) {
		t.Fatalf("reopened again: %v, %v", got, err)
	}
}

// TestJournalRefusesCorruptLines: a complete line that is not an entry
// fails the whole journal, naming the line: an erasure is never skipped.
func TestJournalRefusesCorruptLines(t *testing.T) {
	t.Parallel()
	good := `{"id":"e1","at":"2026-03-01T10:00:00Z","by":"dpo","subjects":["CA11111111111111111111111111111111"]}`
	for _, bad := range []string{
		`not json`,
		`{"id":"","at":"2026-03-01T10:00:00Z","subjects":["CA1"]}`,
		`{"id":"e2","subjects":["CA1"]}`,
		`{"id":"e2","at":"2026-03-01T10:00:00Z","subjects":[]}`,
		`{"id":"e2","at":"2026-03-01T10:00:00Z","subjects":[""]}`,
		`{"id":"e2","at":"2026-03-01T10:00:00Z","subjects":["a"],"number":"+15555550100"}`,
		`{"id":"e2","at":"2026-03-01T10:00:00Z","subjects":["a"]} {}`,
	} {
		_, err := erasure.ReadJournal(strings.NewReader(good + "\n" + bad + "\n" + good + "\n"))
		if !errors.Is(err, erasure.ErrJournal) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: %v, want ErrJournal at line 2", bad, err)
		}
	}
}

// FuzzReadJournal: any bytes give entries or ErrJournal, never a panic;
// the entries accepted, written again, read back the same.
func FuzzReadJournal(f *testing.F) {
	f.Add([]byte(`{"id":"e1","at":"2026-03-01T10:00:00Z","by":"dpo","subjects":["CA11111111111111111111111111111111"]}` + "\n"))
	f.Add([]byte(`{"id":"e1","at":"2026-03-01T10:00:00+02:00","by":"","subjects":["quarantine:1","CA2"]}` + "\n\n" + `{"id":`))
	f.Add([]byte("\n\n\n"))
	f.Add([]byte(`{"id":"\u0000","at":"2026-03-01T10:00:00Z","subjects":["a\u0000"]}` + "\n"))
	f.Add([]byte(`[]` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := erasure.ReadJournal(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, erasure.ErrJournal) {
				t.Fatalf("error %v is not ErrJournal", err)
			}
			return
		}
		path := filepath.Join(t.TempDir(), "j")
		j, _, err := erasure.OpenJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		for _, e := range entries {
			if err := j.Append(e); err != nil {
				t.Fatalf("an entry read back is refused: %v", err)
			}
		}
		j2, again, err := erasure.OpenJournal(path)
		if err == nil {
			j2.Close()
		}
		if err != nil || !sameEntries(again, entries) {
			t.Fatalf("written again: %v, %v; want %v", again, err, entries)
		}
	})
}
