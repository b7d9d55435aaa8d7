package callstate_test

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	"github.com/callledger/callledger/projections/callstate"
)

// randomRecord fills every field of a CallRecord, recursively, each with
// probability 2/3: whatever View reads, a new field included, is set in
// most cases, so DecodeView cannot silently miss it.
func randomRecord(r *rand.Rand) *statev1.CallRecord {
	rec := &statev1.CallRecord{}
	fill(rec.ProtoReflect(), r, 0)
	return rec
}

func fill(m protoreflect.Message, r *rand.Rand, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if r.IntN(3) == 0 || (fd.Message() != nil && depth > 3) {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range r.IntN(4) {
				if fd.Message() != nil {
					e := l.NewElement()
					fill(e.Message(), r, depth+1)
					l.Append(e)
				} else {
					l.Append(scalar(fd, r))
				}
			}
		case fd.IsMap():
			// CallRecord has no maps; a new one fails the comparison.
		case fd.Message() != nil:
			fill(m.Mutable(fd).Message(), r, depth+1)
		default:
			m.Set(fd, scalar(fd, r))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, r *rand.Rand) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 1)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(r.IntN(14) - 1)) // unknown values too
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(r.Uint32()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(r.Uint64()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(r.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(r.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(r.Float32())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.Float64())
	case protoreflect.StringKind:
		alphabet := []rune("CA0123456789abcdefé+ ☎")
		s := make([]rune, r.IntN(40))
		for i := range s {
			s[i] = alphabet[r.IntN(len(alphabet))]
		}
		return protoreflect.ValueOfString(string(s))
	case protoreflect.BytesKind:
		b := make([]byte, r.IntN(20))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	}
	panic("unexpected kind " + fd.Kind().String())
}

// slowView is the reference DecodeView must equal.
func slowView(t testing.TB, b []byte) (want proto.Message, ok bool) {
	rec := &statev1.CallRecord{}
	if err := proto.Unmarshal(b, rec); err != nil {
		return nil, false
	}
	return callstate.View(rec), true
}

func checkDecodeView(t testing.TB, b []byte) {
	t.Helper()
	got, err := callstate.DecodeView(b)
	want, ok := slowView(t, b)
	switch {
	case !ok && err == nil:
		t.Fatalf("DecodeView(%x) accepted what proto.Unmarshal refuses: %v", b, got)
	case ok && err != nil:
		t.Fatalf("DecodeView(%x): %v; proto.Unmarshal accepts it", b, err)
	case ok && !proto.Equal(got, want):
		t.Fatalf("DecodeView(%x)\n got %v\nwant %v", b, got, want)
	}
}

// TestDecodeViewEqualsView: for random records, as Marshal writes them
// and also concatenated (the wire format merges a second encoding into
// the first, which DecodeView hands to the slow path), DecodeView equals
// View of the decoded record.
func TestDecodeViewEqualsView(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20_000 {
		b, err := proto.Marshal(randomRecord(r))
		if err != nil {
			t.Fatal(err)
		}
		checkDecodeView(t, b)
		if i%4 == 0 {
			b2, err := proto.Marshal(randomRecord(r))
			if err != nil {
				t.Fatal(err)
			}
			checkDecodeView(t, append(b, b2...))
		}
	}
}

// FuzzDecodeView: on any input, DecodeView fails exactly where
// proto.Unmarshal does, and otherwise equals View.
func FuzzDecodeView(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		b, err := proto.Marshal(randomRecord(r))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x02, 0x10, 0x05, 0x3a, 0x02, 0x18, 0x01}) // terminal twice
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeView(t, b)
	})
}
