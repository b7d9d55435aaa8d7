package eventcodec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
)

// TestEveryFieldIsClassified walks every string and bytes field reachable
// from Event and fails on one that is neither personal nor clear: a field
// added to the schema is stored in the clear only when someone says so.
func TestEveryFieldIsClassified(t *testing.T) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor, path string)
	visited := map[protoreflect.FullName]bool{}
	walk = func(md protoreflect.MessageDescriptor, path string) {
		if visited[md.FullName()] {
			return
		}
		visited[md.FullName()] = true
		fields := md.Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			name := fd.FullName()
			_, personal := personalFields[name]
			if personal {
				seen[name] = true
				continue // moved whole, whatever it holds
			}
			switch fd.Kind() {
			case protoreflect.StringKind, protoreflect.BytesKind:
				seen[name] = true
				if !clearFields[name] {
					t.Errorf("%s.%s (%s) is neither personal nor clear: add it to personalFields or clearFields (docs/PRIVACY.md §1)",
						path, fd.Name(), name)
				}
			case protoreflect.MessageKind, protoreflect.GroupKind:
				if fd.IsMap() {
					t.Errorf("%s.%s: a map field; classify its entries", path, fd.Name())
				}
				walk(fd.Message(), path+"."+string(fd.Name()))
			}
		}
	}
	walk((&callledgerv1.Event{}).ProtoReflect().Descriptor(), "Event")
	for name := range personalFields {
		if !seen[name] {
			t.Errorf("personalFields names %s, which is not a field reachable from Event", name)
		}
		if clearFields[name] {
			t.Errorf("%s is both personal and clear", name)
		}
	}
	for name := range clearFields {
		if !seen[name] {
			t.Errorf("clearFields names %s, which is not a string or bytes field reachable from Event", name)
		}
	}
	for name := range personalFields {
		if _, err := protoregistry.GlobalFiles.FindDescriptorByName(name); err != nil {
			t.Errorf("personalFields: %s: %v", name, err)
		}
	}
}

// fill sets every field of m (every case of its oneofs, one per returned
// message, starting from body case i) to a value of its own, so that a
// split that loses or keeps a field shows.
func fill(m protoreflect.Message, n *int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			continue // the caller chooses the body
		}
		*n++
		set(m, fd, *n)
	}
}

func set(m protoreflect.Message, fd protoreflect.FieldDescriptor, n int) {
	value := func() protoreflect.Value {
		switch fd.Kind() {
		case protoreflect.StringKind:
			return protoreflect.ValueOfString(fmt.Sprintf("%s-%d", fd.Name(), n))
		case protoreflect.BytesKind:
			return protoreflect.ValueOfBytes(fmt.Appendf(nil, "%s-%d", fd.Name(), n))
		case protoreflect.BoolKind:
			return protoreflect.ValueOfBool(true)
		case protoreflect.EnumKind:
			return protoreflect.ValueOfEnum(1)
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			return protoreflect.ValueOfInt32(int32(n))
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
			return protoreflect.ValueOfInt64(int64(n))
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			return protoreflect.ValueOfUint32(uint32(n))
		case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
			return protoreflect.ValueOfUint64(uint64(n))
		case protoreflect.MessageKind:
			sub := m.NewField(fd).Message()
			fill(sub, &n)
			return protoreflect.ValueOfMessage(sub)
		}
		panic(fmt.Sprintf("kind %v", fd.Kind()))
	}
	if fd.IsList() {
		l := m.Mutable(fd).List()
		if fd.Kind() == protoreflect.MessageKind {
			sub := l.NewElement().Message()
			fill(sub, &n)
			l.Append(protoreflect.ValueOfMessage(sub))
			return
		}
		l.Append(value())
		l.Append(value())
		return
	}
	m.Set(fd, value())
}

// everyBody returns an Event with every field set, once per body case.
func everyBody(t *testing.T) []*callledgerv1.Event {
	t.Helper()
	var out []*callledgerv1.Event
	od := (&callledgerv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("body")
	for i := range od.Fields().Len() {
		ev := &callledgerv1.Event{}
		m := ev.ProtoReflect()
		n := 0
		fill(m, &n)
		set(m, od.Fields().Get(i), 1000)
		// The sealed parts are not part of what is split.
		ev.Sealed, ev.SealedRequest = nil, nil
		out = append(out, ev)
	}
	return out
}

// TestSplit: the clear event has no personal field, the parts hold only
// personal fields and keep the body case, and merging gives the event
// back.
func TestSplit(t *testing.T) {
	for _, ev := range everyBody(t) {
		name := string(ev.ProtoReflect().WhichOneof(ev.ProtoReflect().Descriptor().Oneofs().ByName("body")).Name())
		t.Run(name, func(t *testing.T) {
			orig := proto.Clone(ev)
			clear, facts, request := Split(ev)
			if !proto.Equal(ev, orig) {
				t.Fatal("Split changed its argument")
			}
			checkFields(t, "clear", clear.ProtoReflect(), func(p Part, ok bool) bool { return !ok })
			if request == nil {
				t.Fatal("no request part: the event has a request and a CloudEvent")
			}
			checkFields(t, "request", request.ProtoReflect(), func(p Part, ok bool) bool { return ok && p == PartRequest })
			if facts != nil {
				checkFields(t, "facts", facts.ProtoReflect(), func(p Part, ok bool) bool { return ok && p == PartFacts })
				if got, want := fmt.Sprintf("%T", facts.GetBody()), fmt.Sprintf("%T", ev.GetBody()); got != want {
					t.Errorf("facts has body %s, want %s", got, want)
				}
			}
			if facts == nil && hasPersonalFacts(ev.ProtoReflect().Descriptor(), name) {
				t.Error("no facts part, but the body has personal fields")
			}
			got := proto.Clone(clear).(*callledgerv1.Event)
			Merge(got, facts, request)
			if !proto.Equal(got, ev) {
				t.Errorf("merged back:\n%v\nwant\n%v", got, ev)
			}
		})
	}
}

func hasPersonalFacts(md protoreflect.MessageDescriptor, body string) bool {
	bmd := md.Fields().ByName(protoreflect.Name(body)).Message()
	for i := range bmd.Fields().Len() {
		if p, ok := personalFields[bmd.Fields().Get(i).FullName()]; ok && p == PartFacts {
			return true
		}
	}
	return false
}

// checkFields fails on a set scalar or list field of m (recursively) that
// want refuses.
func checkFields(t *testing.T, what string, m protoreflect.Message, want func(Part, bool) bool) {
	t.Helper()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p, ok := personalFields[fd.FullName()]
		if ok || fd.Kind() != protoreflect.MessageKind || fd.IsList() {
			if !want(p, ok) {
				t.Errorf("%s holds %s", what, fd.FullName())
			}
			return true
		}
		checkFields(t, what, v.Message(), want)
		return true
	})
}

// TestSealedGenerationFoldsAsPlaintext: the stored generation v3 is v2's
// write paths with sealing on; opened by the projection, it folds into the
// same calls and conferences.
func TestSealedGenerationFoldsAsPlaintext(t *testing.T) {
	for _, name := range []string{"%s.json", "%s.conferences.json"} {
		plain, err := os.ReadFile(filepath.Join("testdata/folded", fmt.Sprintf(name, "v2")))
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := os.ReadFile(filepath.Join("testdata/folded", fmt.Sprintf(name, "v3")))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain, sealed) {
			t.Errorf("%s and %s differ: sealing changed what the fold makes of the same events", fmt.Sprintf(name, "v2"), fmt.Sprintf(name, "v3"))
		}
	}
}
