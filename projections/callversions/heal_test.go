package callversions_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/callledger/callledger/api/callledger/state/v1"
	"github.com/callledger/callledger/internal/diskdamage"
	"github.com/callledger/callledger/projections/callstore"
	"github.com/callledger/callledger/projections/callversions"
)

// waitHealed asks for sid until the read model answers again, requiring
// every failure meanwhile to be ErrCorrupt, and returns the answer.
func waitHealed(t *testing.T, m *callversions.Manager, sid string) error {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := m.Get(context.Background(), sid)
		if err == nil || !errors.Is(err, callstore.ErrCorrupt) {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("still corrupt after a minute: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCorruptReadModelIsRebuilt damages the tables of a serving read
// model: the read that meets the damage fails with ErrCorrupt (never a
// crash), CaughtUp turns false, and a new read model rebuilt from the log
// takes over by itself and answers as the old one did.
func TestCorruptReadModelIsRebuilt(t *testing.T) {
	ctx := context.Background()
	log := openLog(t, 3000)
	root := filepath.Join(t.TempDir(), "callstate")
	m, err := callversions.Open(ctx, callversions.Config{Root: root, Log: log, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	waitHead(t, m, log)
	sid := someSid(t, m)
	want, err := m.Get(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	before := m.CurrentName()
	if err := m.Current().Flush(); err != nil {
		t.Fatal(err)
	}
	diskdamage.FlipTables(t, filepath.Join(root, before))

	if _, err := m.Get(ctx, sid); !errors.Is(err, callstore.ErrCorrupt) {
		t.Fatalf("Get on damaged tables: %v, want ErrCorrupt", err)
	}
	if err := waitHealed(t, m, sid); err != nil {
		t.Fatalf("after the rebuild: %v", err)
	}
	got, err := m.Get(ctx, sid)
	if err != nil || !proto.Equal(got, want) {
		t.Errorf("after the rebuild: %v %v, want %v", got, err, want)
	}
	if m.CurrentName() == before || m.Corruptions() == 0 || m.Damaged() {
		t.Errorf("read model %s (was %s), %d corruptions, damaged %v", m.CurrentName(), before, m.Corruptions(), m.Damaged())
	}
	for m.Rebuilding() { // the switch answers before the old one is removed
		time.Sleep(time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(root, before)); !os.IsNotExist(err) {
		t.Errorf("the corrupt read model is still there: %v", err)
	}
	waitHead(t, m, log)
	if !m.CaughtUp() {
		t.Error("not caught up after the rebuild")
	}
}

// TestUnopenableReadModelIsRebuilt: a read model that cannot even be
// opened does not keep the manager (and so the server) from starting; it
// answers ErrCorrupt until its rebuild from the log takes over.
func TestUnopenableReadModelIsRebuilt(t *testing.T) {
	ctx := context.Background()
	log := openLog(t, 3000)
	root := filepath.Join(t.TempDir(), "callstate")
	m, err := callversions.Open(ctx, callversions.Config{Root: root, Log: log, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	waitHead(t, m, log)
	sid := someSid(t, m)
	want, err := m.Get(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	name := m.CurrentName()
	if err := m.Current().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	manifests, _ := filepath.Glob(filepath.Join(root, name, "MANIFEST-*"))
	for _, p := range manifests {
		if err := os.WriteFile(p, []byte("not a manifest"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	diskdamage.FlipTables(t, filepath.Join(root, name))

	m, err = callversions.Open(ctx, callversions.Config{Root: root, Log: log, Logger: quiet})
	if err != nil {
		t.Fatalf("open over a damaged read model: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := waitHealed(t, m, sid); err != nil {
		t.Fatalf("after the rebuild: %v", err)
	}
	if got, err := m.Get(ctx, sid); err != nil || !proto.Equal(got, want) {
		t.Errorf("after the rebuild: %v %v, want %v", got, err, want)
	}
	if m.Corruptions() == 0 {
		t.Error("the damage was not counted")
	}
}

// healBenchEnv sizes TestHealTime's ledger (make bench-heal): it measures
// how long queries are refused after a corruption, it asserts no timing.
const healBenchEnv = "CALLLEDGER_BENCH_HEAL_EVENTS"

// TestHealTime damages the read model of a ledger of $CALLLEDGER_BENCH_HEAL_EVENTS
// events and reports the time from the read that met the damage to the
// first correct answer of the rebuilt read model.
func TestHealTime(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(healBenchEnv))
	if n <= 0 {
		t.Skipf("set %s to a number of events to measure", healBenchEnv)
	}
	ctx := context.Background()
	log := openLog(t, n)
	root := filepath.Join(t.TempDir(), "callstate")
	m, err := callversions.Open(ctx, callversions.Config{Root: root, Log: log, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	began := time.Now()
	waitHead(t, m, log)
	t.Logf("%d events: the live projection caught up in %v", n, time.Since(began).Round(time.Millisecond))
	sid := someSid(t, m)
	want, err := m.Get(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Current().Flush(); err != nil {
		t.Fatal(err)
	}
	diskdamage.FlipTables(t, filepath.Join(root, m.CurrentName()))
	began = time.Now()
	// A scan of every record reads the new table's blocks, which no read
	// has cached yet.
	if err := m.Current().Records(ctx, func(*statev1.CallRecord) error { return nil }); !errors.Is(err, callstore.ErrCorrupt) {
		t.Fatalf("a scan of the damaged tables: %v", err)
	}
	for {
		got, err := m.Get(ctx, sid)
		if err == nil {
			if !proto.Equal(got, want) {
				t.Fatalf("after the rebuild: %v, want %v", got, want)
			}
			break
		}
		if !errors.Is(err, callstore.ErrCorrupt) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%d events: queries answered correctly again %v after the corruption was met", n, time.Since(began).Round(time.Millisecond))
}
