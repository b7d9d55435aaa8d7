package callversions_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
)

type recorder interface {
	Records(ctx context.Context, fn func(*statev1.CallRecord) error) error
}

// compare checks that two read models hold equal records, one for one.
func compare(t *testing.T, want, got recorder) {
	t.Helper()
	var a, b []*statev1.CallRecord
	if err := want.Records(context.Background(), func(r *statev1.CallRecord) error { a = append(a, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := got.Records(context.Background(), func(r *statev1.CallRecord) error { b = append(b, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("%d records, want %d (non-zero)", len(b), len(a))
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			t.Fatalf("record %d differs:\nwant %v\ngot  %v", i, a[i], b[i])
		}
	}
}
