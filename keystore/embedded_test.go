package keystore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	keystorev1 "github.com/callledger/callledger/api/callledger/keystore/v1"
	"github.com/callledger/callledger/internal/residue"
)

func testKEK(t testing.TB) KEK {
	var k KEK
	if _, err := rand.Read(k.key[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

func open(t testing.TB, dir string, kek KEK) *Embedded {
	t.Helper()
	s, err := Open(dir, kek, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	callA = "CA00000000000000000000000000000001"
	callB = "CA00000000000000000000000000000002"
	callC = "CA00000000000000000000000000000003"
)

func sealOpen(t *testing.T, seal, open DataKey) {
	t.Helper()
	nonce := make([]byte, 12)
	ct := seal.AEAD().Seal(nil, nonce, []byte("From=+15555550100"), []byte("ad"))
	pt, err := open.AEAD().Open(nil, nonce, ct, []byte("ad"))
	if err != nil || string(pt) != "From=+15555550100" {
		t.Fatalf("a ciphertext of key %016x does not open with key %016x: %v", seal.ID(), open.ID(), err)
	}
}

func TestKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	kek := testKEK(t)
	s := open(t, dir, kek)

	a, err := s.Key(ctx, callA, "+15555550100", "+15555550199")
	if err != nil {
		t.Fatal(err)
	}
	if a.Subject() != callA {
		t.Errorf("subject %q", a.Subject())
	}
	again, err := s.Key(ctx, callA, "+15555550100", "client:alice")
	if err != nil || again.ID() != a.ID() {
		t.Fatalf("second Key: id %016x want %016x, %v", again.ID(), a.ID(), err)
	}
	if _, err := s.Key(ctx, callB, " 15555550100"); err != nil { // a + decoded as a space
		t.Fatal(err)
	}
	if _, err := s.Key(ctx, callC); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, callA, a.ID())
	if err != nil {
		t.Fatal(err)
	}
	sealOpen(t, a, got)
	if _, err := s.Get(ctx, callA, a.ID()+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of another ID: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "CA0000000000000000000000000000ffff", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown subject: %v, want ErrNotFound", err)
	}
	subjects := func(party string) []string {
		t.Helper()
		out, err := s.Subjects(ctx, party)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	if got := subjects("+1 (555) 555-0100"); !slices.Equal(got, []string{callA, callB}) {
		t.Errorf("Subjects(+15555550100) = %v", got)
	}
	if got := subjects("client:alice"); !slices.Equal(got, []string{callA}) {
		t.Errorf("Subjects(client:alice) = %v", got)
	}
	if got := subjects("+15555550111"); len(got) != 0 {
		t.Errorf("Subjects of a number never seen = %v", got)
	}

	// A reopened store has the same keys and index.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, kek)
	got, err = s.Get(ctx, callA, a.ID())
	if err != nil {
		t.Fatal(err)
	}
	sealOpen(t, a, got)
	if got := subjects("+15555550199"); !slices.Equal(got, []string{callA}) {
		t.Errorf("after reopen: Subjects(+15555550199) = %v", got)
	}

	res, err := s.Destroy(ctx, callA, callA, "CA0000000000000000000000000000beef")
	if err != nil {
		t.Fatal(err)
	}
	if res != (DestroyResult{Destroyed: 1, Unknown: 1}) {
		t.Errorf("Destroy: %+v", res)
	}
	if _, err := s.Get(ctx, callA, a.ID()); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Get after Destroy: %v, want ErrDestroyed", err)
	}
	if _, err := s.Key(ctx, callA, "+15555550100"); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Key after Destroy: %v, want ErrDestroyed", err)
	}
	if _, err := s.Key(ctx, "CA0000000000000000000000000000beef"); !errors.Is(err, ErrDestroyed) {
		t.Errorf("Key of a subject destroyed before it had a key: %v, want ErrDestroyed", err)
	}
	if got := subjects("+15555550100"); !slices.Equal(got, []string{callB}) {
		t.Errorf("after Destroy: Subjects(+15555550100) = %v", got)
	}
	if got := subjects("client:alice"); len(got) != 0 {
		t.Errorf("after Destroy: Subjects(client:alice) = %v", got)
	}
	if res, err := s.Destroy(ctx, callA); err != nil || res != (DestroyResult{AlreadyDestroyed: 1}) {
		t.Errorf("second Destroy: %+v, %v", res, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Destruction survives a reopen; another KEK is refused.
	s = open(t, dir, kek)
	defer s.Close()
	if _, err := s.Get(ctx, callA, a.ID()); !errors.Is(err, ErrDestroyed) {
		t.Errorf("after reopen: %v, want ErrDestroyed", err)
	}
	if _, err := s.Key(ctx, callB); err != nil {
		t.Errorf("another subject after reopen: %v", err)
	}
	other := testKEK(t)
	if _, err := Open(t.TempDir(), other, Options{}); err != nil {
		t.Fatalf("a new store with another KEK: %v", err)
	}
	s.Close()
	if _, err := Open(dir, other, Options{}); !errors.Is(err, ErrWrongKEK) {
		t.Errorf("open with another KEK: %v, want ErrWrongKEK", err)
	}
}

func TestInvalidSubjects(t *testing.T) {
	s := open(t, t.TempDir(), testKEK(t))
	defer s.Close()
	ctx := context.Background()
	for _, sub := range []string{"", "a\x00b", string(make([]byte, 300)), "\xff\xfe"} {
		if _, err := s.Key(ctx, sub); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("Key(%q): %v", sub, err)
		}
		if _, err := s.Destroy(ctx, sub); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("Destroy(%q): %v", sub, err)
		}
	}
}

func TestNormalizeParty(t *testing.T) {
	for in, want := range map[string]string{
		"+15555550100":        "+15555550100",
		" 15555550100":        "+15555550100",
		"+1 (555) 555-0100":   "+15555550100",
		"+44 20 7946 0000\n":  "+442079460000",
		"client:alice":        "client:alice",
		"sip:bob@example.com": "sip:bob@example.com",
		"anonymous":           "anonymous",
		"  ":                  "",
		"+1+2":                "+1+2",
		"12":                  "12",
	} {
		if got := NormalizeParty(in); got != want {
			t.Errorf("NormalizeParty(%q) = %q, want %q", in, got, want)
		}
	}
}

// secrets are the bytes of one subject that must not survive it: its raw
// data keys, their wrapped form, and its parties' MACs.
func secrets(t *testing.T, s *Embedded, subject string) []residue.Needle {
	t.Helper()
	var ns []residue.Needle
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: subjectPrefix(subject), UpperBound: subjectEnd(subject)})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()[len(subjectPrefix(subject)):]
		switch k[0] {
		case recKey:
			var rec keystorev1.DataKey
			if err := proto.Unmarshal(it.Value(), &rec); err != nil {
				t.Fatal(err)
			}
			raw, err := s.unwrap(rec.GetKey(), dataKeyAD(subject, rec.GetKeyId()))
			if err != nil {
				t.Fatal(err)
			}
			ns = append(ns, residue.Bytes("raw key", raw), residue.Bytes("wrapped key", rec.GetKey().GetCiphertext()))
		case recParties:
			var rec keystorev1.Parties
			if err := proto.Unmarshal(it.Value(), &rec); err != nil {
				t.Fatal(err)
			}
			for _, m := range rec.GetMacs() {
				ns = append(ns, residue.Bytes("party MAC", m))
			}
		}
	}
	if len(ns) < 3 {
		t.Fatalf("subject %s: found %d secrets, want a key, its wrapping and a MAC", subject, len(ns))
	}
	return ns
}

// TestDestroyLeavesNoCopy is the key store's erasure proof: after Destroy,
// no file of the store holds the destroyed keys, raw or wrapped, nor the
// MACs of their parties, although they went through the WAL, recycled WAL
// files, several flushes and compactions.
func TestDestroyLeavesNoCopy(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, wholeRangeOver + 10} {
		t.Run(fmt.Sprintf("%d subjects", n), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			kek := testKEK(t)
			s := open(t, dir, kek)
			var victims []string
			var needles []residue.Needle
			for i := range n {
				sub := fmt.Sprintf("CA%032x", 0xdead0000+i)
				victims = append(victims, sub)
				if _, err := s.Key(ctx, sub, "+15555550100", fmt.Sprintf("+1555555%04d", i)); err != nil {
					t.Fatal(err)
				}
				// Other subjects' keys around them, and WAL rotations, so
				// that the victims' WAL is recycled before they die.
				for j := range 20 {
					if _, err := s.Key(ctx, fmt.Sprintf("CA%032x", i*100+j), fmt.Sprintf("+1444555%04d", j)); err != nil {
						t.Fatal(err)
					}
				}
				if i%2 == 0 {
					if err := s.db.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, v := range victims {
				needles = append(needles, secrets(t, s, v)...)
			}
			keep, err := s.Key(ctx, fmt.Sprintf("CA%032x", 7), "+14445550007")
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Destroy(ctx, victims...)
			if err != nil {
				t.Fatal(err)
			}
			if res.Destroyed != n {
				t.Errorf("Destroy: %+v, want %d destroyed", res, n)
			}
			residue.AssertNone(t, dir, needles...)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			residue.AssertNone(t, dir, needles...)

			s = open(t, dir, kek)
			defer s.Close()
			got, err := s.Get(ctx, keep.Subject(), keep.ID())
			if err != nil {
				t.Fatalf("a subject kept: %v", err)
			}
			sealOpen(t, keep, got)
			if subs, err := s.Subjects(ctx, "+15555550100"); err != nil || len(subs) != 0 {
				t.Errorf("Subjects of the erased number: %v, %v", subs, err)
			}
			for _, v := range victims {
				if _, err := s.Key(ctx, v); !errors.Is(err, ErrDestroyed) {
					t.Fatalf("%s after reopen: %v, want ErrDestroyed", v, err)
				}
			}
		})
	}
}

// TestConcurrentKeys: concurrent first uses of a subject make one key, and
// a Destroy racing with them leaves the subject destroyed.
func TestConcurrentKeys(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), testKEK(t))
	defer s.Close()
	const subjects, workers = 16, 8
	ids := make([][]uint64, subjects)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range subjects {
				k, err := s.Key(ctx, fmt.Sprintf("CA%032x", i), fmt.Sprintf("+1555000%04d", w))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids[i] = append(ids[i], k.ID())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, got := range ids {
		if distinct := slices.Compact(slices.Sorted(slices.Values(got))); len(distinct) != 1 {
			t.Errorf("subject %d: keys %x, want one", i, got)
		}
	}
	for w := range workers {
		subs, err := s.Subjects(ctx, fmt.Sprintf("+1555000%04d", w))
		if err != nil || len(subs) != subjects {
			t.Errorf("party %d indexed on %d subjects, want %d (%v)", w, len(subs), subjects, err)
		}
	}

	// Destroy while Key is called: afterwards the subject is destroyed.
	victim := fmt.Sprintf("CA%032x", 0)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Key(ctx, victim, "+15550001111"); err != nil && !errors.Is(err, ErrDestroyed) {
				t.Error(err)
				return
			}
		}
	}()
	if _, err := s.Destroy(ctx, victim); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if _, err := s.Key(ctx, victim); !errors.Is(err, ErrDestroyed) {
		t.Errorf("after a racing Destroy: %v", err)
	}
}

// TestKeyDurableOnceSynced: Key's writes are durable once Sync returns,
// and not by Key itself. A crash between the two loses the key, which is harmless
// only because nothing sealed under it was committed before the Sync (the
// event store's barrier); a crash after keeps the key and its index.
func TestKeyDurableOnceSynced(t *testing.T) {
	ctx := context.Background()
	kek := testKEK(t)
	fs := vfs.NewCrashableMem()
	s, err := Open("keys", kek, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k, err := s.Key(ctx, callA, "+15555550100")
	if err != nil {
		t.Fatal(err)
	}
	reopen := func(t *testing.T) *Embedded {
		t.Helper()
		c, err := Open("keys", kek, Options{FS: fs.CrashClone(vfs.CrashCloneCfg{})})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if _, err := reopen(t).Get(ctx, callA, k.ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("crash before Sync: Get = %v, want ErrNotFound (an unsynced key is not durable; if it were, Sync would be pointless)", err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c := reopen(t)
	if _, err := c.Get(ctx, callA, k.ID()); err != nil {
		t.Fatalf("crash after Sync: Get = %v, want the key", err)
	}
	if subs, err := c.Subjects(ctx, "+15555550100"); err != nil || !slices.Equal(subs, []string{callA}) {
		t.Fatalf("crash after Sync: Subjects = %v, %v, want [%s]", subs, err, callA)
	}
	again, err := c.Key(ctx, callA, "+15555550100")
	if err != nil || again.ID() != k.ID() {
		t.Fatalf("Key after the crash = %016x, %v; want the synced key %016x", again.ID(), err, k.ID())
	}
}

// TestKeyFoundAfterReopen: a subject's next event after a restart is
// sealed under the key it already has, parties or not (loadForKey's point
// reads find its Parties record).
func TestKeyFoundAfterReopen(t *testing.T) {
	ctx := context.Background()
	dir, kek := t.TempDir(), testKEK(t)
	s := open(t, dir, kek)
	withParties, err := s.Key(ctx, callA, "+15555550100")
	if err != nil {
		t.Fatal(err)
	}
	without, err := s.Key(ctx, callB)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, kek)
	defer s.Close()
	for _, c := range []struct {
		subject string
		want    DataKey
	}{{callA, withParties}, {callB, without}} {
		got, err := s.Key(ctx, c.subject, "+15555550111")
		if err != nil || got.ID() != c.want.ID() {
			t.Errorf("Key(%s) after reopen = %016x, %v; want %016x", c.subject, got.ID(), err, c.want.ID())
		}
	}
}
