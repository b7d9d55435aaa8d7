package keystore

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestDataKeyFormatsWithoutItsSecret: a DataKey formatted by fmt (every
// verb) or logged through slog names its ID and subject, never its bytes.
func TestDataKeyFormatsWithoutItsSecret(t *testing.T) {
	secret := bytes.Repeat([]byte{0xde}, 32)
	k, err := NewDataKey("CA0123456789abcdef0123456789abcdef", 7, secret)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("key", "key", k)
	for _, out := range []string{
		fmt.Sprintf("%v", k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprint(k), logged.String(),
	} {
		if strings.Contains(out, "222") || strings.Contains(out, "dede") || strings.Contains(out, "\xde") {
			t.Errorf("the key's bytes in %q", out)
		}
		if !strings.Contains(out, "0000000000000007") {
			t.Errorf("%q does not name the key", out)
		}
	}
}
