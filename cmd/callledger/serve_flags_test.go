package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/callledger/callledger/services/webhook"
)

// TestMinFreeSpaceFlag: unset is the default (0), "0" turns the guard off
// (negative), sizes take units, and nonsense is refused naming the flag.
func TestMinFreeSpaceFlag(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": -1, "512MiB": 512 << 20, "2GB": 2_000_000_000} {
		f := serveFlags{minFreeSpace: in}
		if got, err := f.minFreeBytes(); err != nil || got != want {
			t.Errorf("--min-free-space %q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "-5GB", "99999999999EiB"} {
		f := serveFlags{minFreeSpace: in}
		if got, err := f.minFreeBytes(); err == nil {
			t.Errorf("--min-free-space %q: %d, want an error", in, got)
		}
	}
}

// TestMaxAppendWaitFlag: the flag's value reaches the server, and "0"
// turns the bound off (negative to the server, whose zero is its default).
func TestMaxAppendWaitFlag(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{webhook.DefaultMaxAppendWait: webhook.DefaultMaxAppendWait, 0: -1, 750 * time.Millisecond: 750 * time.Millisecond} {
		f := serveFlags{maxAppendWait: in, cacheMB: 1}
		cfg, err := f.config(slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.HTTP.MaxAppendWait; got != want {
			t.Errorf("--max-append-wait %v: server gets %v, want %v", in, got, want)
		}
	}
}
