package keystoretest

import (
	"context"
	"testing"
)

// TestOpenGivesAWorkingStore: a key made is the key read back.
func TestOpenGivesAWorkingStore(t *testing.T) {
	ctx := context.Background()
	keys := Open(t)
	k, err := keys.Key(ctx, "CA00000000000000000000000000000001", "+15555550100")
	if err != nil {
		t.Fatal(err)
	}
	got, err := keys.Get(ctx, "CA00000000000000000000000000000001", k.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != k.ID() {
		t.Fatalf("Get gave key %d, Key made %d", got.ID(), k.ID())
	}
}
