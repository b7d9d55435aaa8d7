package callstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/callledger/callledger/projections/callstore"
)

// FuzzListPageToken sends List page tokens as a gRPC client could: any
// string, and well-formed tokens of the right filter around any key. The
// answer is a page of calls that match the filter, within the limit, or
// ErrBadPageToken; never a panic or another error.
func FuzzListPageToken(f *testing.F) {
	s := open(f, f.TempDir(), callstore.Options{})
	fixture(f, s)
	filters := []callstore.Filter{{}, {ActiveOnly: true}, {ParentCallSid: sid(3)}, {StartedAfter: t0.UnixNano(), StartedBefore: t0.Add(1e12).UnixNano()}}
	first, err := s.List(context.Background(), filters[0], 2, "")
	if err != nil || first.Next == "" {
		f.Fatalf("first page: token %q, %v", first.Next, err)
	}
	f.Add(uint8(0), uint8(2), first.Next, []byte(nil))
	f.Add(uint8(1), uint8(5), "", []byte{'t'})
	f.Add(uint8(2), uint8(1), "AQ", []byte{'c', 0xff})
	f.Add(uint8(3), uint8(0), "!!", []byte{})
	f.Fuzz(func(t *testing.T, which, limit uint8, raw string, key []byte) {
		filter := filters[int(which)%len(filters)]
		n := int(limit%10) + 1
		for _, token := range []string{raw, callstore.EncodeToken(filter, key)} {
			page, err := s.List(context.Background(), filter, n, token)
			if err != nil {
				if !errors.Is(err, callstore.ErrBadPageToken) {
					t.Fatalf("token %q: %v, want a page or ErrBadPageToken", token, err)
				}
				continue
			}
			if len(page.Calls) > n {
				t.Fatalf("token %q: %d calls, limit %d", token, len(page.Calls), n)
			}
			for _, c := range page.Calls {
				if !filter.Match(c) {
					t.Fatalf("token %q: %s does not match %+v", token, c.GetCallSid(), filter)
				}
			}
		}
	})
}
