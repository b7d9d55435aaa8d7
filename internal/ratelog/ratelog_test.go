package ratelog

import (
	"fmt"
	"testing"
	"time"
)

// clock is a Limiter's time, moved by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestLimiter(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := NewLimiter(10 * time.Second)
	l.now = c.now
	allow := func(key string) string {
		ok, n := l.Allow(key)
		return fmt.Sprint(ok, n)
	}
	steps := []struct {
		advance time.Duration
		key     string
		want    string
	}{
		{0, "a", "true 0"},
		{time.Second, "a", "false 0"},
		{time.Second, "a", "false 0"},
		{0, "b", "true 0"}, // keys are independent
		{8 * time.Second, "a", "true 2"},
		{9 * time.Second, "a", "false 0"},
		{time.Second, "a", "true 1"},
		{time.Minute, "a", "true 0"},
	}
	for i, st := range steps {
		c.t = c.t.Add(st.advance)
		if got := allow(st.key); got != st.want {
			t.Errorf("step %d (%s after %v): Allow = %s, want %s", i, st.key, st.advance, got, st.want)
		}
	}
}

func TestLimiterBoundsKeys(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := NewLimiter(time.Second)
	l.now = c.now
	for i := range 3 * maxKeys {
		if i%maxKeys == 0 {
			c.t = c.t.Add(time.Minute)
		}
		if ok, _ := l.Allow(fmt.Sprint(i)); !ok {
			t.Fatalf("new key %d held back", i)
		}
	}
	if n := len(l.keys); n > maxKeys+1 {
		t.Errorf("limiter holds %d keys, want at most %d", n, maxKeys+1)
	}
}
