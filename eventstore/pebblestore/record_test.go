package pebblestore

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/uuid"
)

type recordFields struct {
	id       uuid.UUID
	rev      uint64
	created  int64
	stream   string
	typ      string
	metadata []byte
	data     []byte
}

var recordCases = []recordFields{
	{uuid.New(), 0, 0, "s", "", nil, nil},
	{uuid.New(), 1, 1_763_600_000_123_456_789, "call-CA0123456789abcdef0123456789abcdef", "CallStatusReported", []byte(`{"k":1}`), []byte{0, 1, 2, 255}},
	{uuid.New(), math.MaxUint64, math.MinInt64, strings.Repeat("x", 256), strings.Repeat("T", 300), bytes.Repeat([]byte{7}, 200), bytes.Repeat([]byte{9}, 70_000)},
	{uuid.New(), 127, -1, "quarantine-status", "t", []byte{}, []byte{}},
}

func encode(f recordFields) []byte {
	return appendRecord(nil, f.id, f.rev, f.created, f.stream, f.typ, f.metadata, f.data)
}

func TestRecordRoundTrip(t *testing.T) {
	for _, f := range recordCases {
		v := encode(f)
		if n := encodedLen(f.stream, f.typ, f.metadata, f.data, f.rev, f.created); n != len(v) {
			t.Errorf("encodedLen = %d, encoding is %d bytes", n, len(v))
		}
		var r record
		if err := decodeRecord(v, &r); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if r.id != f.id || r.revision != f.rev || r.created != f.created || string(r.stream) != f.stream ||
			string(r.typ) != f.typ || !bytes.Equal(r.metadata, f.metadata) || !bytes.Equal(r.data, f.data) {
			t.Errorf("decoded %+v, want %+v", r, f)
		}
	}
}

// TestRecordCorrupt checks that damaged records give ErrCorrupt, not a
// panic or a silently wrong event.
func TestRecordCorrupt(t *testing.T) {
	for _, f := range recordCases {
		v := encode(f)
		for n := range len(v) {
			var r record
			if err := decodeRecord(v[:n], &r); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("record truncated to %d of %d bytes: %v, want ErrCorrupt", n, len(v), err)
			}
		}
		var r record
		if err := decodeRecord(append(v, 0), &r); !errors.Is(err, ErrCorrupt) {
			t.Errorf("record with a trailing byte: %v, want ErrCorrupt", err)
		}
		bad := bytes.Clone(v)
		bad[0] = recordVersion + 1
		if err := decodeRecord(bad, &r); !errors.Is(err, ErrCorrupt) {
			t.Errorf("record of an unknown version: %v, want ErrCorrupt", err)
		}
	}
	// A length that overflows int when added to an offset.
	v := append([]byte{recordVersion}, make([]byte, 16)...)
	v = append(v, 0, 0)                                                       // revision, created
	v = append(v, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01) // stream length 2^64-1
	var r record
	if err := decodeRecord(v, &r); !errors.Is(err, ErrCorrupt) {
		t.Errorf("record with a huge length: %v, want ErrCorrupt", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	for _, c := range recordCases[:2] {
		f.Add(encode(c))
	}
	f.Add([]byte{})
	f.Add([]byte{recordVersion})
	f.Fuzz(func(t *testing.T, v []byte) {
		var r record
		if err := decodeRecord(v, &r); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes must survive a re-encode unchanged.
		again := appendRecord(nil, r.id, r.revision, r.created, string(r.stream), string(r.typ), r.metadata, r.data)
		var r2 record
		if err := decodeRecord(again, &r2); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if r2.id != r.id || r2.revision != r.revision || r2.created != r.created || !bytes.Equal(r2.stream, r.stream) ||
			!bytes.Equal(r2.typ, r.typ) || !bytes.Equal(r2.metadata, r.metadata) || !bytes.Equal(r2.data, r.data) {
			t.Fatalf("re-encoded record differs: %+v vs %+v", r2, r)
		}
	})
}

func TestKeys(t *testing.T) {
	// One stream's index keys never fall inside another's range, even when
	// one name prefixes the other.
	lo, hi := streamKey(nil, "call-a", 0), streamKeyEnd(nil, "call-a")
	for _, other := range []string{"call-ab", "call-", "call-a\x01", "call-a-b"} {
		for _, rev := range []uint64{0, 1, math.MaxUint64} {
			k := streamKey(nil, other, rev)
			if bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0 {
				t.Errorf("key of %q@%d inside the range of call-a", other, rev)
			}
		}
	}
	if k := streamKey(nil, "call-a", math.MaxUint64); bytes.Compare(k, hi) >= 0 {
		t.Errorf("last key of call-a outside its range")
	}
	for _, pos := range []uint64{0, 1, 1 << 40, math.MaxUint64} {
		if got, err := eventKeyPos(eventKey(nil, pos)); err != nil || got != pos {
			t.Errorf("event key of %d parses as %d, %v", pos, got, err)
		}
	}
	if _, err := eventKeyPos([]byte("e123")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short event key: %v, want ErrCorrupt", err)
	}
	// The log's keys are written in increasing order only if its version
	// key sorts before every event key.
	if bytes.Compare([]byte(keyFormat), eventKey(nil, 0)) >= 0 {
		t.Errorf("layout version key %q does not sort before the event keys", keyFormat)
	}
	// The index's own keys are outside every stream's ranges.
	for _, k := range []string{keyApplied, keyIndexFormat} {
		if k[0] == prefixStream || k[0] == prefixID {
			t.Errorf("index key %q inside the stream or dedup keys", k)
		}
	}
}
