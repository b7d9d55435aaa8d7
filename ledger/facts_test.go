package ledger

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
)

// populate sets every field of m, recursively, to a value derived from
// zero: with zero true, scalars are their zero values (which proto3
// optional fields still mark present), otherwise non-zero ones, negative
// numbers and multi-byte text included.
func populate(m protoreflect.Message, zero bool) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !fd.ContainingOneof().IsSynthetic() {
			continue
		}
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.MessageKind:
			if fd.IsList() {
				l := m.Mutable(fd).List()
				e := l.NewElement()
				populate(e.Message(), zero)
				l.Append(e)
				continue
			}
			populate(m.Mutable(fd).Message(), zero)
			continue
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString(map[bool]string{false: "v-" + string(fd.Name()) + "-é", true: ""}[zero])
		case protoreflect.BytesKind:
			v = protoreflect.ValueOfBytes(map[bool][]byte{false: []byte("raw\xff"), true: nil}[zero])
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(!zero)
		case protoreflect.EnumKind:
			v = protoreflect.ValueOfEnum(map[bool]protoreflect.EnumNumber{false: 3, true: 0}[zero])
		case protoreflect.Int32Kind:
			v = protoreflect.ValueOfInt32(map[bool]int32{false: -7, true: 0}[zero])
		case protoreflect.Int64Kind:
			v = protoreflect.ValueOfInt64(map[bool]int64{false: -1 << 40, true: 0}[zero])
		default:
			panic("populate: no value for " + fd.Kind().String())
		}
		m.Set(fd, v)
	}
}

// eventsOfEveryBody returns one event per body type with every field set.
func eventsOfEveryBody(t testing.TB, zero bool) []*callledgerv1.Event {
	t.Helper()
	var out []*callledgerv1.Event
	body := (&callledgerv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	for i := range body.Len() {
		ev := &callledgerv1.Event{}
		populate(ev.ProtoReflect(), zero)
		populate(ev.ProtoReflect().Mutable(body.Get(i)).Message(), zero)
		out = append(out, ev)
	}
	return out
}

// TestDecodeFactsFastKnowsEveryField: the fast decoder takes an event of
// every body type with every field set, and gives what proto.Unmarshal
// gives. A field added to event.proto fails this test until the decoder
// knows it (until then, such events take the slow path).
func TestDecodeFactsFastKnowsEveryField(t *testing.T) {
	t.Parallel()
	for _, zero := range []bool{false, true} {
		for _, ev := range eventsOfEveryBody(t, zero) {
			data, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := decodeFactsFast(data)
			if !ok {
				t.Errorf("fast path refused %T (zero values %v)", ev.GetBody(), zero)
				continue
			}
			want := proto.Clone(ev).(*callledgerv1.Event)
			want.Request, want.CloudEvent = nil, nil
			if !proto.Equal(got, want) {
				t.Errorf("fast path (zero values %v):\n%v\nwant\n%v", zero, got, want)
			}
		}
	}
}

// TestDecodeFactsFastLeavesTheUnexpectedToProto: inputs the fast path
// does not handle go to proto.Unmarshal, and DecodeFacts still returns
// its result.
func TestDecodeFactsFastLeavesTheUnexpectedToProto(t *testing.T) {
	t.Parallel()
	ev := eventsOfEveryBody(t, false)[0]
	ev.Request, ev.CloudEvent = nil, nil
	facts, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	request := protowire.AppendBytes(protowire.AppendTag(nil, fieldRequest, protowire.BytesType), []byte{0x0a, 0x01, 'G'})
	// Each field of the facts, then the request: as many runs of facts.
	var scattered []byte
	for off := 0; off < len(facts); {
		num, typ, n := protowire.ConsumeTag(facts[off:])
		n += protowire.ConsumeFieldValue(num, typ, facts[off+n:])
		scattered = append(append(scattered, facts[off:off+n]...), request...)
		off += n
	}
	for name, data := range map[string][]byte{
		"unknown field":        protowire.AppendVarint(protowire.AppendTag(facts, 99, protowire.VarintType), 1),
		"wrong wire type":      protowire.AppendVarint(protowire.AppendTag(facts, 2, protowire.VarintType), 1),
		"timestamp twice":      protowire.AppendBytes(protowire.AppendTag(facts, 4, protowire.BytesType), []byte{0x10, 0x05}),
		"body twice":           protowire.AppendBytes(protowire.AppendTag(facts, 10, protowire.BytesType), []byte{0x08, 0x02}),
		"facts in many pieces": scattered,
		"invalid UTF-8":        protowire.AppendString(protowire.AppendTag(facts, 2, protowire.BytesType), "CA\xff"),
		"truncated":            facts[:len(facts)-1],
	} {
		if _, ok := decodeFactsFast(data); ok {
			t.Errorf("%s: the fast path took it", name)
		}
		got, err := DecodeFacts(eventstore.RecordedEvent{Data: data})
		full := &callledgerv1.Event{}
		ferr := proto.Unmarshal(data, full)
		if (err == nil) != (ferr == nil) {
			t.Errorf("%s: DecodeFacts error %v, proto.Unmarshal error %v", name, err, ferr)
			continue
		}
		full.Request = nil
		if err == nil && !proto.Equal(got, full) {
			t.Errorf("%s: DecodeFacts\n%v\nwant\n%v", name, got, full)
		}
	}
}

// FuzzDecodeFactsFast: whatever the fast path takes, the protobuf path
// decodes to the same event.
func FuzzDecodeFactsFast(f *testing.F) {
	for _, zero := range []bool{false, true} {
		for _, ev := range eventsOfEveryBody(f, zero) {
			data, err := proto.Marshal(ev)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeFactsFast(data)
		if !ok {
			return
		}
		slow := &callledgerv1.Event{}
		if err := unmarshalFacts(data, slow); err != nil {
			t.Fatalf("fast path took what proto refuses: %v", err)
		}
		if !proto.Equal(fast, slow) {
			t.Fatalf("fast path\n%v\nproto\n%v", fast, slow)
		}
	})
}

// BenchmarkDecodeFacts decodes a status callback of the usual size (about
// 1.1 KB, 80% of it the verbatim request) on the fast path and on the
// protobuf path it replaces.
func BenchmarkDecodeFacts(b *testing.B) {
	ev := eventsOfEveryBody(b, false)[0]
	ev.Request.Body = make([]byte, 700)
	for range 10 {
		ev.Request.Headers = append(ev.Request.Headers, ev.Request.Headers[0])
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d bytes", len(data))
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := decodeFactsFast(data); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := unmarshalFacts(data, &callledgerv1.Event{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
