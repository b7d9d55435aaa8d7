package erasure

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Entry is one erasure as the journal records it: CallSids (and
// quarantine:<event ID> subjects), never a number, so that the journal is
// not personal data and can be kept anywhere (docs/PRIVACY.md §8).
type Entry struct {
	ID       string    `json:"id"`
	At       time.Time `json:"at"`
	By       string    `json:"by"`
	Subjects []string  `json:"subjects"`
}

// ErrJournal reports a journal that does not parse: a complete line that
// is not an entry. Nothing is replayed from such a journal, and serve
// refuses to start on it rather than skip an erasure.
var ErrJournal = errors.New("erasure journal")

// Limits of an entry, so that a journal line is bounded.
const (
	maxIDLen      = 128
	maxByLen      = 256
	maxSubjectLen = 256
	maxLineBytes  = 16 << 20
)

// check validates an entry: an ID, a time, and subjects the key store
// accepts (non-empty UTF-8 without NUL, at most 256 bytes).
func (e Entry) check() error {
	switch {
	case e.ID == "" || len(e.ID) > maxIDLen || !utf8.ValidString(e.ID):
		return errors.New("id missing or malformed")
	case e.At.IsZero():
		return errors.New("at missing")
	case len(e.By) > maxByLen || !utf8.ValidString(e.By):
		return errors.New("by malformed")
	case len(e.Subjects) == 0:
		return errors.New("no subjects")
	}
	for _, s := range e.Subjects {
		if s == "" || len(s) > maxSubjectLen || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("subject of %d bytes malformed", len(s))
		}
	}
	return nil
}

// ParseEntry parses one journal line (without its newline).
func ParseEntry(line []byte) (Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Entry{}, err
	}
	if dec.More() {
		return Entry{}, errors.New("more than one value on the line")
	}
	if err := e.check(); err != nil {
		return Entry{}, err
	}
	return e, nil
}

// ReadJournal parses a journal. A last line without its newline is an
// erasure cut short by a crash before it was acknowledged (the journal is
// written before anything is destroyed): it is left out. Empty lines are
// skipped; any other line that is not an entry fails with ErrJournal,
// naming the line.
func ReadJournal(r io.Reader) ([]Entry, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out []Entry
	for n := 1; ; n++ {
		line, err := readLine(br)
		if errors.Is(err, io.EOF) {
			return out, nil // nothing, or a torn last line
		}
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrJournal, n, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e, err := ParseEntry(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrJournal, n, err)
		}
		out = append(out, e)
	}
}

// readLine reads one line up to its newline, which it drops; io.EOF when
// the input ends before one.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLineBytes {
			return nil, fmt.Errorf("longer than %d bytes", maxLineBytes)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// Journal appends entries to the erasure journal file, each synced before
// Append returns.
type Journal struct {
	path string
	mu   sync.Mutex
	f    *os.File
	size int64 // the end of the last complete line
	ids  map[string]bool
}

// OpenJournal opens the journal at path for appending, creating it (0600)
// when absent, and returns it with the entries it holds. A torn last line
// (a crash while it was written, before anything was destroyed) is cut
// off, so that the next entry starts a line of its own.
func OpenJournal(path string) (*Journal, []Entry, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open erasure journal: %w", err)
	}
	entries, err := ReadJournal(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	size, err := cutTornTail(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("erasure journal %s: %w", path, err)
	}
	j := &Journal{path: path, f: f, size: size, ids: map[string]bool{}}
	for _, e := range entries {
		j.ids[e.ID] = true
	}
	return j, entries, nil
}

// cutTornTail truncates f after its last newline, leaves its offset at
// the end and returns its size.
func cutTornTail(f *os.File) (int64, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	end := size
	buf := make([]byte, 4096)
	for end > 0 {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return size, nil
	}
	return end, truncate(f, end)
}

// truncate cuts f at size, syncs it and moves its offset there.
func truncate(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	_, err := f.Seek(size, io.SeekStart)
	return err
}

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// Append writes e as one line and syncs the file.
func (j *Journal) Append(e Entry) error {
	if err := e.check(); err != nil {
		return fmt.Errorf("erasure journal entry: %w", err)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("erasure journal entry: %w", err)
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("erasure journal closed")
	}
	_, err = j.f.Write(line)
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		// Take the partial line back, so that the next entry starts a
		// line of its own (a failure here is found again at start-up).
		_ = truncate(j.f, j.size)
		return fmt.Errorf("write erasure journal: %w", err)
	}
	j.size += int64(len(line))
	j.ids[e.ID] = true
	return nil
}

// Has reports whether the journal holds an entry of that ID.
func (j *Journal) Has(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ids[id]
}

// Close closes the file; later Appends fail.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
