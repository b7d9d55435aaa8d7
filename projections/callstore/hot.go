package callstore

// hotRecords holds the encoded records of the calls the live projection
// wrote last, so that the next event of a call seen seconds ago is folded
// without a read-model lookup. It holds exactly what the last committed
// batches wrote for those calls (entries are added only after a commit),
// so a record decoded from it is the one the database would return.
//
// It is bounded by bytes with two generations: when the current one
// exceeds half the budget, it becomes the previous one and the older
// previous one is dropped. A call written recently is always in one of
// them, the current generation holding its latest encoding. Only Apply
// uses it, under applyMu; Apply is also the only writer of call records,
// so anything that comes to change or remove them otherwise must drop
// their entries here.
type hotRecords struct {
	cur, prev map[string][]byte
	curBytes  int
	limit     int // bytes per generation
}

// defaultHotBytes is the budget of a Store's hot records: at about 0.5 KB
// per encoded record, some 60,000 calls, several minutes of a busy
// account's traffic.
const defaultHotBytes = 32 << 20

func newHotRecords(budget int) *hotRecords {
	return &hotRecords{cur: map[string][]byte{}, prev: map[string][]byte{}, limit: max(budget/2, 1)}
}

// get returns the latest committed encoding of sid's record, if held.
func (h *hotRecords) get(sid string) ([]byte, bool) {
	if v, ok := h.cur[sid]; ok {
		return v, true
	}
	v, ok := h.prev[sid]
	return v, ok
}

// put records the encoding of sid's record a batch just committed. data
// must not be changed afterwards.
func (h *hotRecords) put(sid string, data []byte) {
	if old, ok := h.cur[sid]; ok {
		h.curBytes -= len(old)
	} else {
		h.curBytes += len(sid)
	}
	h.cur[sid] = data
	h.curBytes += len(data)
	if h.curBytes > h.limit {
		h.prev, h.cur, h.curBytes = h.cur, make(map[string][]byte, len(h.cur)), 0
	}
}
