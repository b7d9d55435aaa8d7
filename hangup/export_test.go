package hangup

// SetReadPage makes h read a call's stream n events at a time, so that a
// test can spread a request's events over several pages.
func SetReadPage(h *Handler, n int) { h.readPage = n }
