// Package residue finds what an erasure should have removed: it searches
// every file under a directory for a phone number in each encoding Twilio
// uses, and for given bytes (a key, a decrypted request), and reports the
// files and offsets. It reads each file's raw bytes and, for Pebble SSTs,
// every key and value decompressed: a string stored twice in a block is
// compressed to a back-reference, so its bytes need not be in the file.
// Tests of erasure use it as their proof (docs/PRIVACY.md §9).
package residue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// A Needle is a byte string to look for, with a name for reports.
type Needle struct {
	Name  string
	Bytes []byte
}

// Bytes is a needle of b.
func Bytes(name string, b []byte) Needle { return Needle{Name: name, Bytes: bytes.Clone(b)} }

// PhoneNumber returns the needles of an E.164 number ("+15555550100") in
// every encoding Twilio uses: E.164; URL-encoded (%2B, %2b); the digits
// alone (a form decoder turns an unencoded + into a space); the national
// significant number; and for NANP numbers (+1) the formatted national
// number of the REST API's from_formatted, "(555) 555-0100". It panics on
// anything that is not "+" followed by 8 to 15 digits: it is for tests.
func PhoneNumber(e164 string) []Needle {
	digits, ok := strings.CutPrefix(e164, "+")
	if !ok || len(digits) < 8 || len(digits) > 15 || strings.Trim(digits, "0123456789") != "" {
		panic(fmt.Sprintf("residue: %q is not an E.164 number", e164))
	}
	national := digits[countryCodeLen(digits):]
	ns := []Needle{
		{"E.164", []byte(e164)},
		{"URL-encoded", []byte("%2B" + digits)},
		{"URL-encoded (lower case)", []byte("%2b" + digits)},
		{"digits", []byte(digits)},
		{"national", []byte(national)},
	}
	if digits[0] == '1' && len(national) == 10 {
		ns = append(ns, Needle{"NANP formatted", []byte("(" + national[:3] + ") " + national[3:6] + "-" + national[6:])})
	}
	return ns
}

// countryCodeLen is the length of the ITU-T E.164 country code that digits
// start with: 1 and 7 have one digit; the two-digit codes are listed; the
// rest of zones 2 to 9 have three.
func countryCodeLen(digits string) int {
	switch digits[0] {
	case '1', '7':
		return 1
	}
	two := map[string]bool{
		"20": true, "27": true, "30": true, "31": true, "32": true, "33": true, "34": true, "36": true, "39": true,
		"40": true, "41": true, "43": true, "44": true, "45": true, "46": true, "47": true, "48": true, "49": true,
		"51": true, "52": true, "53": true, "54": true, "55": true, "56": true, "57": true, "58": true,
		"60": true, "61": true, "62": true, "63": true, "64": true, "65": true, "66": true,
		"81": true, "82": true, "84": true, "86": true,
		"90": true, "91": true, "92": true, "93": true, "94": true, "95": true, "98": true,
	}
	if two[digits[:2]] {
		return 2
	}
	return 3
}

// A Hit is one place a needle was found.
type Hit struct {
	// File is the path, relative to the directory searched.
	File string
	// Offset is the byte offset in the file, or, for a hit inside an SST's
	// decoded contents, the index of the key/value pair.
	Offset int64
	// Needle is the needle's name.
	Needle string
	// Where is "raw" for the file's bytes, "sst key" or "sst value" for an
	// SST's decoded contents.
	Where string
}

func (h Hit) String() string {
	return fmt.Sprintf("%s: %s at %s offset %d", h.File, h.Needle, h.Where, h.Offset)
}

// Find searches every regular file under dir, recursively. The directory
// may belong to a running store: a file removed during the walk is
// skipped, and a table that does not parse yet (Pebble is still writing
// it) is read again, whole, for up to tableWait before it is an error;
// any other error is one at once.
func Find(dir string, needles ...Needle) ([]Hit, error) {
	var hits []Hit
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while the walk went on (Pebble deletes obsolete files)
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(tableWait)
		for {
			fileHits, err := findInFile(path, needles)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if errors.Is(err, errTable) && time.Now().Before(deadline) {
				time.Sleep(tableWait / 20)
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			for _, h := range fileHits {
				h.File = rel
				hits = append(hits, h)
			}
			return nil
		}
	})
	if err != nil {
		return nil, fmt.Errorf("residue: %w", err)
	}
	return hits, nil
}

// errTable: an SST that does not parse, which Find reads again.
var errTable = errors.New("table does not parse")

// tableWait bounds how long Find reads a table that does not parse again:
// far longer than Pebble takes to finish writing one.
const tableWait = 5 * time.Second

// findInFile searches one file's raw bytes and, for an SST, its keys and
// values decompressed.
func findInFile(path string, needles []Needle) ([]Hit, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var hits []Hit
	for _, n := range needles {
		for off := 0; ; {
			i := bytes.Index(b[off:], n.Bytes)
			if i < 0 {
				break
			}
			hits = append(hits, Hit{Offset: int64(off + i), Needle: n.Name, Where: "raw"})
			off += i + 1
		}
	}
	if strings.HasSuffix(path, ".sst") {
		sstHits, err := findInTable(path, needles)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errTable, err)
		}
		hits = append(hits, sstHits...)
	}
	return hits, nil
}

// findInTable searches every point key and value of a Pebble SST,
// decompressed, older versions of a key included. Range deletions and
// range keys, which hold key bounds only in callledger's stores, are
// searched in the raw bytes only.
func findInTable(path string, needles []Needle) ([]Hit, error) {
	f, err := vfs.Default.Open(path)
	if err != nil {
		return nil, err
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	r, err := sstable.NewReader(context.Background(), readable, sstable.ReaderOptions{})
	if err != nil {
		_ = readable.Close()
		return nil, err
	}
	defer r.Close()
	var hits []Hit
	match := func(b []byte, i int64, where string) {
		for _, n := range needles {
			if bytes.Contains(b, n.Bytes) {
				hits = append(hits, Hit{Offset: i, Needle: n.Name, Where: where})
			}
		}
	}
	it, err := r.NewIter(sstable.NoTransforms, nil, nil, sstable.AssertNoBlobHandles)
	if err != nil {
		return nil, err
	}
	var i int64
	for kv := it.First(); kv != nil; kv = it.Next() {
		match(kv.K.UserKey, i, "sst key")
		v, _, err := kv.Value(nil)
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		match(v, i, "sst value")
		i++
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return hits, nil
}

// AssertNone fails t with every hit of needles under dir.
func AssertNone(t testing.TB, dir string, needles ...Needle) {
	t.Helper()
	hits, err := Find(dir, needles...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		t.Errorf("residue under %s: %s", dir, h)
	}
}
