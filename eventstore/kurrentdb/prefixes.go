package kurrentdb

import (
	"container/list"
	"sync"
)

// prefixCache remembers, for recently appended streams, the event IDs and
// positions up to some revision. A stream's events never change once
// written, so what it holds stays true: an append reads the stream only
// after the revision it knows, which is still a read of the whole stream,
// without carrying its history over the network again. (Were old events
// truncated by $maxCount or scavenged, the cache would still know their
// IDs, which only makes duplicates easier to catch.)
//
// Entries are immutable snapshots; a longer one replaces a shorter one.
// The cache is bounded in streams, least recently used first out.
type prefixCache struct {
	max int

	mu    sync.Mutex
	items map[string]*list.Element // of *prefixItem
	lru   list.List                // front: most recently used
}

type prefixItem struct {
	stream string
	state  streamState
}

func newPrefixCache(max int) *prefixCache {
	return &prefixCache{max: max, items: map[string]*list.Element{}}
}

// get returns the known prefix of stream, if any. The caller must not
// modify its ids.
func (c *prefixCache) get(stream string) (streamState, bool) {
	if c.max <= 0 {
		return streamState{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[stream]
	if !ok {
		return streamState{}, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*prefixItem).state, true
}

// put records st, which must not be modified afterwards, unless a longer
// prefix is known already.
func (c *prefixCache) put(stream string, st streamState) {
	if c.max <= 0 || !st.exists {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[stream]; ok {
		it := el.Value.(*prefixItem)
		if st.head > it.state.head {
			it.state = st
		}
		c.lru.MoveToFront(el)
		return
	}
	c.items[stream] = c.lru.PushFront(&prefixItem{stream: stream, state: st})
	for c.lru.Len() > c.max {
		old := c.lru.Remove(c.lru.Back()).(*prefixItem)
		delete(c.items, old.stream)
	}
}

// drop forgets stream (it was deleted: its revisions may start over).
func (c *prefixCache) drop(stream string) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[stream]; ok {
		c.lru.Remove(el)
		delete(c.items, stream)
	}
}
