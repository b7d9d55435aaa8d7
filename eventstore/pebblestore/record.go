package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/google/uuid"
)

// ErrCorrupt reports bytes on disk that do not decode as this package wrote
// them. It is never retryable: the store directory needs attention.
var ErrCorrupt = errors.New("pebblestore: corrupt data")

// Keys of the log database: the events, and the layout version. The
// version key sorts before every event key, so that the log's keys are
// written in increasing order: its flushed tables then never overlap and
// Pebble moves them down the LSM instead of rewriting them.
const (
	prefixEvent   = 'e' // e<pos u64 BE> → event record
	keyFormat     = "_format"
	formatVersion = 2
)

// Keys of the index database. Each kind of key gets one byte so that the
// kinds occupy disjoint, ordered ranges of the keyspace and a range scan
// never crosses from one kind into another.
const (
	prefixID     = 'i' // i<stream>\x00<event id 16B> → rev u64 BE, pos u64 BE (revisions ≥ scanIDs only)
	prefixStream = 's' // s<stream>\x00<rev u64 BE>   → pos u64 BE, event id 16B
	// keyIndexFormat holds the index layout version.
	keyIndexFormat     = "mformat"
	indexFormatVersion = 1
	// keyScanIDs holds the index's scanIDs: the revision from which
	// events have an i key. It is fixed when the index is created.
	keyScanIDs = "mscanids"
	// keyApplied holds the position of the last event the index covers:
	// every event up to it is indexed, none after it.
	keyApplied = "mapplied"
)

// recordVersion is the first byte of every event record, so that a future
// encoding can be introduced without rewriting the log.
const recordVersion = 1

const (
	eventKeyLen    = 1 + 8
	idValueLen     = 16
	streamValueLen = 8 + 16
)

// eventKey appends the key of the event at pos to dst.
func eventKey(dst []byte, pos uint64) []byte {
	dst = append(dst, prefixEvent)
	return binary.BigEndian.AppendUint64(dst, pos)
}

// eventKeyPos parses an event key.
func eventKeyPos(key []byte) (uint64, error) {
	if len(key) != eventKeyLen || key[0] != prefixEvent {
		return 0, fmt.Errorf("event key %x: %w", key, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(key[1:]), nil
}

// idKey appends the key of the dedup entry for id in stream to dst. The NUL
// separator cannot occur in stream names (ValidateStreamName), so the key of
// one stream is never a prefix of another's.
func idKey(dst []byte, stream string, id uuid.UUID) []byte {
	dst = append(dst, prefixID)
	dst = append(dst, stream...)
	dst = append(dst, 0)
	return append(dst, id[:]...)
}

// streamKey appends the key of stream's event at rev to dst.
func streamKey(dst []byte, stream string, rev uint64) []byte {
	dst = streamPrefix(dst, stream)
	return binary.BigEndian.AppendUint64(dst, rev)
}

// streamPrefix appends the prefix shared by the stream index keys of stream.
func streamPrefix(dst []byte, stream string) []byte {
	dst = append(dst, prefixStream)
	dst = append(dst, stream...)
	return append(dst, 0)
}

// streamKeyEnd appends the exclusive upper bound of stream's index keys.
func streamKeyEnd(dst []byte, stream string) []byte {
	dst = append(dst, prefixStream)
	dst = append(dst, stream...)
	return append(dst, 1)
}

// streamValue encodes a stream index entry: where the event is, and its ID,
// so that the IDs of a short stream can be read with its index.
func streamValue(dst []byte, pos uint64, id uuid.UUID) []byte {
	dst = binary.BigEndian.AppendUint64(dst, pos)
	return append(dst, id[:]...)
}

func parseStreamValue(v []byte) (pos uint64, id uuid.UUID, err error) {
	if len(v) != streamValueLen {
		return 0, uuid.UUID{}, fmt.Errorf("stream index entry of %d bytes: %w", len(v), ErrCorrupt)
	}
	copy(id[:], v[8:])
	return binary.BigEndian.Uint64(v), id, nil
}

// idValue encodes a dedup entry: where the original event is.
func idValue(dst []byte, rev, pos uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, rev)
	return binary.BigEndian.AppendUint64(dst, pos)
}

func parseIDValue(v []byte) (rev, pos uint64, err error) {
	if len(v) != idValueLen {
		return 0, 0, fmt.Errorf("dedup entry of %d bytes: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), nil
}

func parseU64(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("value of %d bytes where 8 were expected: %w", len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// record is an event record decoded in place: its byte fields alias the
// encoded value, so it is valid only as long as that value is.
type record struct {
	id       uuid.UUID
	revision uint64
	created  int64 // unix nanoseconds
	stream   []byte
	typ      []byte
	metadata []byte
	data     []byte
}

// encodedLen is the exact size appendRecord will use, so that callers can
// size buffers once.
func encodedLen(stream, typ string, metadata, data []byte, rev uint64, created int64) int {
	n := 1 + 16 + uvarintLen(rev) + varintLen(created)
	for _, l := range [...]int{len(stream), len(typ), len(metadata), len(data)} {
		n += uvarintLen(uint64(l)) + l
	}
	return n
}

// appendRecord encodes an event record: version byte, 16-byte ID, uvarint
// revision, varint creation time (unix ns), then stream, type, metadata and
// data, each as a uvarint length followed by the bytes. The position is the
// key, so it is not repeated here.
func appendRecord(dst []byte, id uuid.UUID, rev uint64, created int64, stream, typ string, metadata, data []byte) []byte {
	dst = append(dst, recordVersion)
	dst = append(dst, id[:]...)
	dst = binary.AppendUvarint(dst, rev)
	dst = binary.AppendVarint(dst, created)
	dst = binary.AppendUvarint(dst, uint64(len(stream)))
	dst = append(dst, stream...)
	dst = binary.AppendUvarint(dst, uint64(len(typ)))
	dst = append(dst, typ...)
	dst = binary.AppendUvarint(dst, uint64(len(metadata)))
	dst = append(dst, metadata...)
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	return append(dst, data...)
}

// decoder walks an encoded record, remembering the first failure so that the
// field-by-field code stays linear.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("record %s: %w", what, ErrCorrupt)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed field. what names it in errors only, and
// is never built per call: this is the hot loop of every read.
func (d *decoder) bytes(what string) []byte {
	if d.err != nil {
		return nil
	}
	l, n := binary.Uvarint(d.b)
	if n <= 0 || l > uint64(len(d.b)-n) {
		d.err = fmt.Errorf("record %s length: %w", what, ErrCorrupt)
		return nil
	}
	d.b = d.b[n:]
	v := d.b[:l:l]
	d.b = d.b[l:]
	return v
}

// decodeRecordHeader decodes a record up to and including its stream name,
// which is all a filtered reader needs to decide whether to keep it.
func decodeRecordHeader(v []byte, r *record) (rest decoder) {
	d := decoder{b: v}
	if len(v) < 1+16 {
		d.fail("header")
		return d
	}
	if v[0] != recordVersion {
		d.err = fmt.Errorf("record version %d: %w", v[0], ErrCorrupt)
		return d
	}
	copy(r.id[:], v[1:17])
	d.b = v[17:]
	r.revision = d.uvarint("revision")
	r.created = d.varint("created")
	r.stream = d.bytes("stream")
	return d
}

// decodeRecordBody finishes what decodeRecordHeader started.
func decodeRecordBody(d decoder, r *record) error {
	r.typ = d.bytes("type")
	r.metadata = d.bytes("metadata")
	r.data = d.bytes("data")
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// decodeRecord decodes a whole record, validating every length; it never
// panics on malformed input.
func decodeRecord(v []byte, r *record) error {
	d := decodeRecordHeader(v, r)
	if d.err != nil {
		return d.err
	}
	return decodeRecordBody(d, r)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarintLen(u)
}

// saturatingAdd adds without wrapping, for range ends computed from
// caller-supplied positions.
func saturatingAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}
