package diskdamage

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestFlipTablesDamagesTablesOnly(t *testing.T) {
	dir := t.TempDir()
	orig := bytes.Repeat([]byte{1, 2, 3, 4}, 100)
	for _, name := range []string{"000001.sst", "000002.sst", "MANIFEST-000001"} {
		if err := os.WriteFile(filepath.Join(dir, name), orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	FlipTables(t, dir)
	for _, name := range []string{"000001.sst", "000002.sst"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(b[:300], orig[:300]) || !bytes.Equal(b[300:], orig[300:]) {
			t.Errorf("%s: want its first three quarters flipped and the rest as it was", name)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "MANIFEST-000001")); !bytes.Equal(b, orig) {
		t.Error("a file that is not a table was changed")
	}
}
