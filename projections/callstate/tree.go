package callstate

import (
	"context"
	"errors"

	callledgerv1 "github.com/callledger/callledger/api/callledger/v1"
	"github.com/callledger/callledger/eventstore"
)

// Tree is a call and every leg of its tree, as the read model holds them:
// what GetCall answers, and what the hang-up command and the reconciler
// look a call's account and status up in.
type Tree struct {
	// Call is the call asked for.
	Call *callledgerv1.Call
	// Legs is every leg of its tree, Call included: the root first, then
	// by CallSid.
	Legs []*callledgerv1.Call
	// Position is a log position the answer is at least as recent as.
	Position eventstore.Position
}

// TreeReader reads call trees from the call-state read model. It is the
// one read-model interface of GetCall, the hang-up command and the
// reconciler; callstore.Store and callversions.Manager implement it.
type TreeReader interface {
	// Tree returns the tree of sid, or an error wrapping ErrNotFound when
	// the read model knows no such call.
	Tree(ctx context.Context, sid string) (Tree, error)
}

// ErrNotFound: the read model knows no call with that SID.
var ErrNotFound = errors.New("call not found")

// Account is the account of the call, else of the first leg of its tree
// that knows one: a placeholder knows its account only from its tree. ""
// when none does.
func (t Tree) Account() string {
	if a := t.Call.GetAccountSid(); a != "" {
		return a
	}
	for _, l := range t.Legs {
		if a := l.GetAccountSid(); a != "" {
			return a
		}
	}
	return ""
}
