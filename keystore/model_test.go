package keystore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// TestAgainstModel runs random sequences of Key, Get, Subjects, Destroy
// and reopenings against a model of what the store must answer: a subject
// keeps one key until destroyed, then answers ErrDestroyed for ever; the
// index lists exactly the live subjects that named a party.
func TestAgainstModel(t *testing.T) {
	t.Parallel() // bound by fsyncs, not CPU
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		dir := t.TempDir()
		kek := testKEK(t)
		s, err := Open(dir, kek, Options{CacheSize: rapid.IntRange(1, 8).Draw(rt, "cache")})
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { s.Close() }()

		subjects := []string{"CA01", "CA02", "CA03", "CA04", "quarantine:e1"}
		parties := []string{"+15555550100", "+15555550101", "client:alice", "+442079460000"}
		keys := map[string]uint64{}           // live subject → its key
		destroyed := map[string]bool{}        // subjects destroyed
		named := map[string]map[string]bool{} // party → live subjects that named it

		rt.Repeat(map[string]func(*rapid.T){
			"key": func(rt *rapid.T) {
				sub := rapid.SampledFrom(subjects).Draw(rt, "subject")
				ps := rapid.SliceOfN(rapid.SampledFrom(parties), 0, 3).Draw(rt, "parties")
				k, err := s.Key(ctx, sub, ps...)
				if destroyed[sub] {
					if !errors.Is(err, ErrDestroyed) {
						rt.Fatalf("Key(%s) after Destroy: %v", sub, err)
					}
					return
				}
				if err != nil {
					rt.Fatal(err)
				}
				if id, ok := keys[sub]; ok && id != k.ID() {
					rt.Fatalf("Key(%s): key %016x, had %016x", sub, k.ID(), id)
				}
				keys[sub] = k.ID()
				for _, p := range ps {
					if named[p] == nil {
						named[p] = map[string]bool{}
					}
					named[p][sub] = true
				}
			},
			"get": func(rt *rapid.T) {
				sub := rapid.SampledFrom(subjects).Draw(rt, "subject")
				id, live := keys[sub]
				if !live {
					id = rapid.Uint64().Draw(rt, "id")
				}
				k, err := s.Get(ctx, sub, id)
				switch {
				case destroyed[sub]:
					if !errors.Is(err, ErrDestroyed) {
						rt.Fatalf("Get(%s) after Destroy: %v", sub, err)
					}
				case live:
					if err != nil || k.ID() != id {
						rt.Fatalf("Get(%s, %016x): %v", sub, id, err)
					}
				default:
					if !errors.Is(err, ErrNotFound) {
						rt.Fatalf("Get(%s) of a subject never keyed: %v", sub, err)
					}
				}
			},
			"subjects": func(rt *rapid.T) {
				p := rapid.SampledFrom(parties).Draw(rt, "party")
				got, err := s.Subjects(ctx, p)
				if err != nil {
					rt.Fatal(err)
				}
				var want []string
				for sub := range named[p] {
					want = append(want, sub)
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					rt.Fatalf("Subjects(%s) = %v, want %v", p, got, want)
				}
			},
			"destroy": func(rt *rapid.T) {
				subs := rapid.SliceOfNDistinct(rapid.SampledFrom(subjects), 1, 3, rapid.ID[string]).Draw(rt, "subjects")
				var want DestroyResult
				for _, sub := range subs {
					switch _, live := keys[sub]; {
					case destroyed[sub]:
						want.AlreadyDestroyed++
					case live:
						want.Destroyed++
					default:
						want.Unknown++
					}
				}
				res, err := s.Destroy(ctx, subs...)
				if err != nil {
					rt.Fatal(err)
				}
				if res != want {
					rt.Fatalf("Destroy(%v) = %+v, want %+v", subs, res, want)
				}
				for _, sub := range subs {
					destroyed[sub] = true
					delete(keys, sub)
					for _, m := range named {
						delete(m, sub)
					}
				}
			},
			"reopen": func(rt *rapid.T) {
				if err := s.Close(); err != nil {
					rt.Fatal(err)
				}
				if s, err = Open(dir, kek, Options{CacheSize: 2}); err != nil {
					rt.Fatal(fmt.Errorf("reopen: %w", err))
				}
			},
		})
	})
}
