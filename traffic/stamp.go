package traffic

import (
	"bytes"
	"hash/fnv"
	"net/url"
	"sync"
	"time"

	"github.com/callledger/callledger/twilio"
)

// Stamper dates requests as they are sent. Generate fixes every Timestamp
// when it builds the traffic, from a timeline that runs ahead of the clock
// (a call's completed callback is minutes after its start), which makes a
// receiver's delay measurements meaningless. A sender that delivers the
// traffic in real time stamps each request just before sending it: the
// Timestamp becomes the send time minus a realistic delivery delay (tens
// of milliseconds, now and then a few seconds), and the request is signed
// again. A retry keeps the stamp and the signature of its original, byte
// for byte, as Twilio's retries do. A Stamper is safe for concurrent use.
type Stamper struct {
	token, publicURL string
	mu               sync.Mutex
	stamped          map[string]*stamp // by the original body
}

type stamp struct {
	once sync.Once
	req  Request
}

// NewStamper returns a stamper that signs as cfg does.
func NewStamper(cfg Config) *Stamper {
	return &Stamper{token: cfg.Token, publicURL: cfg.PublicURL, stamped: map[string]*stamp{}}
}

// Stamp returns r dated at sent minus a delivery delay and signed again.
// Requests without a Timestamp parameter (Dial actions, recording
// callbacks) are returned unchanged. Twilio's Timestamp has one-second
// resolution, so the stamp is at or before sent.
func (s *Stamper) Stamp(r Request, sent time.Time) Request {
	if !bytes.Contains(r.Body, []byte("Timestamp=")) {
		return r
	}
	s.mu.Lock()
	st, ok := s.stamped[string(r.Body)]
	if !ok {
		st = &stamp{}
		s.stamped[string(r.Body)] = st
	}
	s.mu.Unlock()
	st.once.Do(func() { st.req = s.restamp(r, sent) })
	out := st.req
	out.Retry = r.Retry
	return out
}

func (s *Stamper) restamp(r Request, sent time.Time) Request {
	at := sent.Add(-deliveryDelay(r.Body))
	var body []byte
	for i, pair := range bytes.Split(r.Body, []byte("&")) {
		if i > 0 {
			body = append(body, '&')
		}
		if bytes.HasPrefix(pair, []byte("Timestamp=")) {
			pair = []byte("Timestamp=" + url.QueryEscape(rfc2822(at)))
		}
		body = append(body, pair...)
	}
	r.Body = body
	h := r.Header.Clone()
	h.Set("X-Twilio-Signature", twilio.Sign(s.token, s.publicURL+r.URI(), body))
	r.Header = h
	return r
}

// deliveryDelay draws Twilio's delay before sending a callback from the
// request's bytes (so it needs no shared random source): mostly 20–400 ms,
// one request in fifty 1–3 s.
func deliveryDelay(body []byte) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write(body)
	x := h.Sum64()
	if x%50 == 0 {
		return time.Second + time.Duration(x>>8%2000)*time.Millisecond
	}
	return 20*time.Millisecond + time.Duration(x>>8%380)*time.Millisecond
}
