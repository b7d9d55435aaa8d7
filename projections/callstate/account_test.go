package callstate_test

import (
	"testing"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/projections/callstate"
)

// TestTreeAccount: Tree.Account is a call's own account first, else the
// first leg's that knows one (a placeholder's), else none.
func TestTreeAccount(t *testing.T) {
	t.Parallel()
	own := &callledgerv1.Call{CallSid: "a", AccountSid: "AC1"}
	placeholder := &callledgerv1.Call{CallSid: "b"}
	other := &callledgerv1.Call{CallSid: "c", AccountSid: "AC2"}
	for _, tc := range []struct {
		name string
		call *callledgerv1.Call
		legs []*callledgerv1.Call
		want string
	}{
		{"its own", own, []*callledgerv1.Call{other, own}, "AC1"},
		{"a placeholder's tree", placeholder, []*callledgerv1.Call{placeholder, other}, "AC2"},
		{"nobody knows", placeholder, []*callledgerv1.Call{placeholder}, ""},
		{"not found", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := (callstate.Tree{Call: tc.call, Legs: tc.legs}).Account(); got != tc.want {
				t.Errorf("Account = %q, want %q", got, tc.want)
			}
		})
	}
}
