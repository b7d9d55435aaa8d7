package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/callledger/callledger/eventstore"

	"github.com/callledger/callledger/eventstore/kurrentdb/kurrentdbtest"
)

// TestOpenStoreRefusesBadConnectionStrings: a --store that cannot work
// fails the start with a message naming the problem, and never shows the
// password it holds.
func TestOpenStoreRefusesBadConnectionStrings(t *testing.T) {
	t.Parallel()
	closed, err := kurrentdbtest.Start(kurrentdbtest.Options{})
	if err != nil {
		t.Fatalf("start KurrentDB stand-in: %v", err)
	}
	closed.Close() // nothing listens there any more
	for _, tc := range []struct {
		name, store, want string
	}{
		{"a path", "/var/lib/callledger", "want empty (the embedded store) or a KurrentDB connection string"},
		{"kurrentdb scheme", "kurrentdb://admin:s3cret@db:2113", "esdb:// and esdb+discover:// only"},
		{"unknown scheme", "postgres://admin:s3cret@db/ledger", `unknown scheme "postgres"`},
		{"no host", "esdb://?tls=false", "no host"},
		{"zero deadline", "esdb://admin:s3cret@127.0.0.1:2113?tls=false&defaultDeadline=0", "defaultDeadline"},
		{"bad option value", "esdb://127.0.0.1:2113?tls=maybe", "--store"},
		{"nothing listening", "esdb://admin:s3cret@" + closed.Addr() + "?tls=false", "KurrentDB did not answer"},
		{"nothing listening, TLS on", "esdb://" + closed.Addr(), "tls=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := OpenStore(ctx, tc.store, t.TempDir(), StoreOptions{Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenStore(%q): %v, want an error mentioning %q", tc.store, err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestRedactStoreURL(t *testing.T) {
	for in, want := range map[string]string{
		"esdb://admin:changeit@h1:2113,h2:2113?tls=true": "esdb://admin:xxxxx@h1:2113,h2:2113?tls=true",
		"esdb+discover://ops:p@ss@db.example.com":        "esdb+discover://ops:xxxxx@db.example.com",
		"esdb://h:2113?tls=false":                        "esdb://h:2113?tls=false",
		"esdb://user@h:2113":                             "esdb://user@h:2113",
	} {
		if got := redactStoreURL(in); got != want {
			t.Errorf("redactStoreURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenStoreRefusesDamagedLedger: a ledger whose files are damaged
// stops the start with a message that names `callledger check`.
func TestOpenStoreRefusesDamagedLedger(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	quiet := StoreOptions{Logger: slog.New(slog.DiscardHandler)}
	s, err := OpenStore(ctx, "", dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "call-1", eventstore.Any(), eventstore.EventData{ID: uuid.New(), Type: "T", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	manifests, err := filepath.Glob(filepath.Join(dir, "ledger", "MANIFEST-*"))
	if err != nil || len(manifests) == 0 {
		t.Fatalf("no manifest: %v", err)
	}
	for _, p := range manifests {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = OpenStore(ctx, "", dir, quiet)
	if err == nil || !strings.Contains(err.Error(), "callledger check --data-dir "+dir) {
		t.Fatalf("open over a damaged ledger: %v; want a message naming callledger check", err)
	}
}
