package pebblelog

import (
	"errors"
	"io/fs"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/callledger/callledger/internal/logsink"
)

func TestLoggerLevelsAndRepeats(t *testing.T) {
	var out logsink.Buffer
	l := New(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})), time.Hour)
	l.Infof("flushed %d tables", 3)
	for i := range 5 {
		l.Errorf("deleting obsolete file %d: %v", i, syscall.ENOSPC)
	}
	l.Errorf("another failure: %s", "x")
	got := out.String()
	if strings.Contains(got, "flushed") {
		t.Errorf("Infof logged at Info:\n%s", got)
	}
	if n := strings.Count(got, "deleting obsolete file"); n != 1 {
		t.Errorf("a repeated Errorf was logged %d times within the interval, want once:\n%s", n, got)
	}
	if !strings.Contains(got, "another failure: x") {
		t.Errorf("a different Errorf was held back:\n%s", got)
	}
}

func TestFatalfPanicsAndCatchReturnsIt(t *testing.T) {
	var out logsink.Buffer
	l := New(slog.New(slog.NewTextHandler(&out, nil)), 0)
	cause := &fs.PathError{Op: "sync", Path: "000002.log", Err: syscall.EIO}
	err := Catch(func() error {
		l.Fatalf("pebble: fatal commit error: %v", cause)
		return nil
	})
	if !IsFatal(err) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Catch of Fatalf = %v; want a *Fatal wrapping EIO", err)
	}
	if !strings.Contains(err.Error(), "fatal commit error") || !strings.Contains(out.String(), "fatal commit error") {
		t.Errorf("message lost: error %q, log %q", err, out.String())
	}
	if err := Catch(func() error { return syscall.ENOSPC }); !errors.Is(err, syscall.ENOSPC) || IsFatal(err) {
		t.Errorf("Catch of a plain error = %v", err)
	}
	defer func() {
		if r := recover(); r != "not pebble's" {
			t.Errorf("Catch swallowed or changed another panic: %v", r)
		}
	}()
	_ = Catch(func() error { panic("not pebble's") })
}

// TestCatchFatalCommit is the case this package exists for: a WAL sync
// fails, Pebble calls Fatalf, and the commit returns an error on the
// caller's goroutine instead of taking the process down (or, were Fatalf
// to return, reporting the batch committed).
func TestCatchFatalCommit(t *testing.T) {
	var failSync errorfs.Toggle
	failSync.Injector = errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo {
			return &fs.PathError{Op: "sync", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	})
	var out logsink.Buffer
	db, err := pebble.Open("db", &pebble.Options{
		FS:     errorfs.Wrap(vfs.NewMem(), &failSync),
		Logger: New(slog.New(slog.NewTextHandler(&out, nil)), 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("a"), []byte("1"), pebble.Sync); err != nil {
		t.Fatalf("commit before the fault: %v", err)
	}
	failSync.On()
	err = Catch(func() error { return db.Set([]byte("b"), []byte("2"), pebble.Sync) })
	if !IsFatal(err) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("commit with a failing sync: %v; want the fatal commit error wrapping EIO", err)
	}
	failSync.Off()
	_ = Catch(db.Close) // reports the WAL's failure again; nothing to check
}
