// Package traffic generates realistic, signed Twilio Voice webhook traffic:
// whole call flows (outbound calls, inbound calls that <Dial> a child leg,
// recordings), delivered out of order and with retries, as Twilio really
// delivers them. The simulate command, the ingest benchmark and the ledger
// loader all draw from it, so demos, load tests and tests see the same shapes.
package traffic

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/callledger/callledger/twilio"
)

// Request is one webhook exactly as Twilio would send it.
type Request struct {
	Kind    twilio.Kind
	Method  string
	Path    string
	Query   string // raw, without '?'
	Header  http.Header
	Body    []byte
	CallSid string // the stream the request belongs to
	Retry   bool   // a redelivery of an earlier request, byte for byte
	Expect  int    // the HTTP status a ledger answers
}

// URI is the request target: path and query.
func (r Request) URI() string {
	if r.Query == "" {
		return r.Path
	}
	return r.Path + "?" + r.Query
}

// Config shapes the generated traffic.
type Config struct {
	// Calls is the number of call trees (a root call and its child legs).
	Calls int
	// Seed makes the traffic reproducible.
	Seed uint64
	// PublicURL and Token sign the requests as Twilio would.
	PublicURL string
	Token     string
	// Start is when the first call begins; Twilio's Timestamp parameters
	// follow from it. Zero means now.
	Start time.Time
	// RetryRate is the share of requests delivered twice (default 0.05;
	// negative disables retries).
	RetryRate float64
	// Interleave is how many calls are in flight at once in the delivery
	// order (default 16).
	Interleave int
}

// Scenario names what happens in one generated call tree.
type Scenario string

// The generated scenarios, with their share of the traffic.
const (
	OutboundCompleted   Scenario = "outbound-completed"
	OutboundBusy        Scenario = "outbound-busy"
	OutboundNoAnswer    Scenario = "outbound-no-answer"
	OutboundFailed      Scenario = "outbound-failed"
	InboundDialAnswered Scenario = "inbound-dial-answered"
	InboundDialRecorded Scenario = "inbound-dial-recorded"
	InboundDialNoAnswer Scenario = "inbound-dial-no-answer"
)

var scenarioWeights = []struct {
	s Scenario
	w int
}{
	{OutboundCompleted, 35}, {OutboundBusy, 8}, {OutboundNoAnswer, 7}, {OutboundFailed, 3},
	{InboundDialAnswered, 30}, {InboundDialRecorded, 10}, {InboundDialNoAnswer, 7},
}

// Generate returns every request of cfg.Calls call trees in delivery order.
func Generate(cfg Config) []Request {
	g := newGenerator(cfg)
	flows := make([][]Request, 0, cfg.Calls)
	for i := 0; i < cfg.Calls; i++ {
		flows = append(flows, g.flow(i))
	}
	return g.interleave(flows)
}

type generator struct {
	cfg     Config
	rng     *rand.Rand
	account string
}

func newGenerator(cfg Config) *generator {
	if cfg.Start.IsZero() {
		cfg.Start = time.Now().UTC()
	}
	if cfg.RetryRate == 0 {
		cfg.RetryRate = 0.05
	}
	if cfg.Interleave <= 0 {
		cfg.Interleave = 16
	}
	g := &generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x63616c6c6c656467))}
	g.account = g.sid("AC")
	return g
}

func (g *generator) sid(prefix string) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.rng.UintN(256))
	}
	return prefix + hex.EncodeToString(b[:])
}

func (g *generator) pickScenario() Scenario {
	total := 0
	for _, sw := range scenarioWeights {
		total += sw.w
	}
	n := g.rng.IntN(total)
	for _, sw := range scenarioWeights {
		if n < sw.w {
			return sw.s
		}
		n -= sw.w
	}
	return OutboundCompleted
}

// leg is one call leg's constant parameters.
type leg struct {
	sid, parent, direction, from, to string
	seq                              int
}

func (g *generator) phone() string {
	return fmt.Sprintf("+1%03d555%04d", 200+g.rng.IntN(780), g.rng.IntN(10000))
}

// flow builds one call tree's requests in the order Twilio fires them.
func (g *generator) flow(i int) []Request {
	start := g.cfg.Start.Add(time.Duration(i) * 50 * time.Millisecond)
	sc := g.pickScenario()
	switch sc {
	case OutboundCompleted, OutboundBusy, OutboundNoAnswer, OutboundFailed:
		l := &leg{sid: g.sid("CA"), direction: "outbound-api", from: g.phone(), to: g.phone()}
		var out []Request
		t := start
		out = append(out, g.status(l, "initiated", t, nil))
		if sc == OutboundFailed {
			return append(out, g.status(l, "failed", t.Add(time.Second), terminal(0, "404")))
		}
		t = t.Add(time.Duration(1+g.rng.IntN(3)) * time.Second)
		out = append(out, g.status(l, "ringing", t, nil))
		switch sc {
		case OutboundBusy:
			return append(out, g.status(l, "busy", t.Add(2*time.Second), terminal(0, "486")))
		case OutboundNoAnswer:
			return append(out, g.status(l, "no-answer", t.Add(30*time.Second), terminal(0, "487")))
		}
		t = t.Add(time.Duration(2+g.rng.IntN(10)) * time.Second)
		out = append(out, g.status(l, "in-progress", t, nil))
		d := 5 + g.rng.IntN(600)
		return append(out, g.status(l, "completed", t.Add(time.Duration(d)*time.Second), completedParams(d)))
	default:
		parent := &leg{sid: g.sid("CA"), direction: "inbound", from: g.phone(), to: g.phone()}
		child := &leg{sid: g.sid("CA"), parent: parent.sid, direction: "outbound-dial", from: parent.from, to: g.phone()}
		var out []Request
		t := start.Add(time.Second)
		out = append(out, g.status(child, "initiated", t, nil))
		t = t.Add(time.Second)
		out = append(out, g.status(child, "ringing", t, nil))
		var dialStatus string
		var d int
		if sc == InboundDialNoAnswer {
			t = t.Add(30 * time.Second)
			out = append(out, g.status(child, "no-answer", t, terminal(0, "487")))
			dialStatus = "no-answer"
		} else {
			t = t.Add(time.Duration(2+g.rng.IntN(8)) * time.Second)
			out = append(out, g.status(child, "in-progress", t, nil))
			d = 5 + g.rng.IntN(900)
			t = t.Add(time.Duration(d) * time.Second)
			out = append(out, g.status(child, "completed", t, completedParams(d)))
			dialStatus = "completed"
		}
		out = append(out, g.dial(parent, child, dialStatus, d))
		if sc == InboundDialRecorded {
			rec := g.sid("RE")
			out = append(out,
				g.recording(parent, rec, "in-progress", t.Add(-time.Duration(d)*time.Second), 0),
				g.recording(parent, rec, "completed", t.Add(-time.Duration(d)*time.Second), d))
		}
		total := int(t.Sub(start)/time.Second) + 2
		out = append(out, g.status(parent, "completed", t.Add(2*time.Second), completedParams(total)))
		return out
	}
}

func terminal(duration int, sip string) [][2]string {
	return [][2]string{{"CallDuration", strconv.Itoa(duration)}, {"SipResponseCode", sip}}
}

func completedParams(d int) [][2]string {
	return [][2]string{
		{"CallDuration", strconv.Itoa(d)}, {"Duration", strconv.Itoa((d + 59) / 60)}, {"SipResponseCode", "200"},
	}
}

// form encodes parameters in the given order: Twilio does not sort them.
func form(params [][2]string) []byte {
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(p[0]))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p[1]))
	}
	return []byte(b.String())
}

func rfc2822(t time.Time) string { return t.UTC().Format("Mon, 2 Jan 2006 15:04:05 -0700") }

func (g *generator) status(l *leg, status string, at time.Time, extra [][2]string) Request {
	params := [][2]string{
		{"Called", l.to}, {"Direction", l.direction}, {"Timestamp", rfc2822(at)},
		{"CallbackSource", "call-progress-events"}, {"SequenceNumber", strconv.Itoa(l.seq)},
		{"CallSid", l.sid}, {"To", l.to}, {"ApiVersion", "2010-04-01"}, {"CallStatus", status},
		{"From", l.from}, {"AccountSid", g.account}, {"Caller", l.from}, {"FromCountry", "US"}, {"ToCountry", "US"},
	}
	if l.parent != "" {
		params = append(params, [2]string{"ParentCallSid", l.parent})
	}
	params = append(params, extra...)
	l.seq++
	return g.sign(Request{Kind: twilio.KindStatus, Method: http.MethodPost, Path: "/twilio/voice/status",
		Body: form(params), CallSid: l.sid, Expect: http.StatusNoContent})
}

func (g *generator) dial(parent, child *leg, dialStatus string, d int) Request {
	params := [][2]string{
		{"Called", parent.to}, {"DialCallSid", child.sid}, {"Direction", parent.direction},
		{"DialBridged", strconv.FormatBool(dialStatus == "completed")}, {"CallSid", parent.sid},
		{"To", parent.to}, {"ApiVersion", "2010-04-01"}, {"CallStatus", "in-progress"}, {"From", parent.from},
		{"DialCallStatus", dialStatus}, {"AccountSid", g.account}, {"Caller", parent.from},
		{"DialCallDuration", strconv.Itoa(d)},
	}
	return g.sign(Request{Kind: twilio.KindDial, Method: http.MethodPost, Path: "/twilio/voice/dial",
		Body: form(params), CallSid: parent.sid, Expect: http.StatusOK})
}

func (g *generator) recording(parent *leg, rec, status string, started time.Time, d int) Request {
	params := [][2]string{
		{"RecordingSource", "DialVerb"}, {"RecordingSid", rec},
		{"RecordingUrl", "https://api.twilio.com/2010-04-01/Accounts/" + g.account + "/Recordings/" + rec},
		{"RecordingStatus", status}, {"RecordingChannels", "2"}, {"ErrorCode", "0"}, {"CallSid", parent.sid},
		{"RecordingStartTime", rfc2822(started)}, {"AccountSid", g.account},
	}
	if status == "completed" {
		params = append(params, [2]string{"RecordingDuration", strconv.Itoa(d)})
	}
	return g.sign(Request{Kind: twilio.KindRecording, Method: http.MethodPost, Path: "/twilio/voice/recording",
		Body: form(params), CallSid: parent.sid, Expect: http.StatusNoContent})
}

func (g *generator) sign(r Request) Request {
	r.Header = http.Header{
		"Content-Type":               {"application/x-www-form-urlencoded; charset=UTF-8"},
		"User-Agent":                 {"TwilioProxy/1.1"},
		"Accept":                     {"*/*"},
		"X-Home-Region":              {"us1"},
		"I-Twilio-Idempotency-Token": {g.token()},
		"X-Twilio-Signature":         {twilio.Sign(g.cfg.Token, g.cfg.PublicURL+r.URI(), r.Body)},
	}
	return r
}

func (g *generator) token() string {
	u := g.sid("")
	return u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:32]
}

// interleave merges the flows into one delivery order: up to Interleave
// calls are in flight at once, each flow's requests are locally reordered
// (a neighbour swapped now and then, as separate HTTP requests race), and
// some requests come again a little later, byte for byte.
func (g *generator) interleave(flows [][]Request) []Request {
	for _, f := range flows {
		for i := 1; i < len(f); i++ {
			if g.rng.Float64() < 0.15 {
				f[i-1], f[i] = f[i], f[i-1]
			}
		}
	}
	var out []Request
	var active [][]Request
	next := 0
	for next < len(flows) || len(active) > 0 {
		for len(active) < g.cfg.Interleave && next < len(flows) {
			active = append(active, flows[next])
			next++
		}
		k := g.rng.IntN(len(active))
		r := active[k][0]
		out = append(out, r)
		rest := active[k][1:]
		if g.cfg.RetryRate > 0 && g.rng.Float64() < g.cfg.RetryRate {
			// Redeliver within this flow, a little later.
			dup := r
			dup.Retry = true
			rest = slices.Insert(slices.Clone(rest), g.rng.IntN(len(rest)+1), dup)
		}
		active[k] = rest
		if len(active[k]) == 0 {
			active = append(active[:k], active[k+1:]...)
		}
	}
	return out
}
