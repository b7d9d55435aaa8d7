package webhook

import (
	"container/list"
	"sync"
	"time"
)

// appendWaits knows when each append in flight began, oldest first: the
// oldest one's wait is how far behind the store is now, whatever the
// number of appends (Config.MaxAppendWait). Appends end roughly in the
// order they began (group commits), so the front is the one waiting
// longest.
type appendWaits struct {
	mu    sync.Mutex
	began list.List // of time.Time, in the order the appends began
}

// start notes an append beginning at t; done(the result) when it ends.
func (a *appendWaits) start(t time.Time) *list.Element {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.began.PushBack(t)
}

func (a *appendWaits) done(e *list.Element) {
	a.mu.Lock()
	a.began.Remove(e)
	a.mu.Unlock()
}

// oldest is how long the oldest append in flight has waited at now; zero
// when none is in flight.
func (a *appendWaits) oldest(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.began.Front()
	if f == nil {
		return 0
	}
	return now.Sub(f.Value.(time.Time))
}
