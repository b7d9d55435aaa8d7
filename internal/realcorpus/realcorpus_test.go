package realcorpus_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/callledger/callledger/internal/realcorpus"
)

func TestCorpusLoads(t *testing.T) {
	ps, err := realcorpus.Load(realcorpus.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) < 30 {
		t.Fatalf("%d payloads, want at least 30", len(ps))
	}
	kinds := map[string]int{}
	for _, p := range ps {
		kinds[p.Kind]++
		route, ok := realcorpus.RouteOf(p.Kind)
		if !ok || route != p.Route {
			t.Errorf("%s: kind %q on route %q", p.ID, p.Kind, p.Route)
		}
		if strings.TrimSpace(p.Source) == "" {
			t.Errorf("%s: no source", p.ID)
		}
		if p.Kind == realcorpus.KindEvents {
			if p.Params != nil || p.Body == "" {
				t.Errorf("%s: an Event Streams entry needs a body and no params", p.ID)
			}
			continue
		}
		if len(p.Params) == 0 || p.Body != "" {
			t.Errorf("%s: a form entry needs params and no body", p.ID)
		}
		// What a replay sends decodes to the published parameters.
		got, err := realcorpus.ParseForm(p.Encode())
		if err != nil {
			t.Errorf("%s: encoded form does not parse: %v", p.ID, err)
			continue
		}
		if len(got) != len(p.Params) {
			t.Errorf("%s: encoded form has %d params, want %d", p.ID, len(got), len(p.Params))
			continue
		}
		for i := range got {
			if got[i] != p.Params[i] {
				t.Errorf("%s: param %d round-trips to %q=%q, want %q=%q",
					p.ID, i, got[i].Name, got[i].Value, p.Params[i].Name, p.Params[i].Value)
			}
		}
	}
	for _, k := range []string{
		realcorpus.KindStatus, realcorpus.KindDial, realcorpus.KindRecording, realcorpus.KindTranscription,
		realcorpus.KindAMD, realcorpus.KindConference, realcorpus.KindEvents,
	} {
		if kinds[k] == 0 {
			t.Errorf("no payload of kind %q", k)
		}
	}
}

// entry is a valid line; each case below breaks one rule.
func entry(t *testing.T, edit func(m map[string]any)) string {
	t.Helper()
	m := map[string]any{
		"id": "x", "kind": "status", "route": "/twilio/voice/status", "method": "POST",
		"content_type": "application/x-www-form-urlencoded",
		"params":       [][2]string{{"CallSid", "CA1"}, {"CallStatus", "completed"}},
		"raw":          "CallSid=CA1&CallStatus=completed",
		"source":       "https://example.test/fixture", "license": "MIT", "notes": "",
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseRejects(t *testing.T) {
	ok := entry(t, nil)
	if _, err := realcorpus.Parse(strings.NewReader(ok + "\n")); err != nil {
		t.Fatalf("valid entry rejected: %v", err)
	}
	cases := map[string]string{
		"duplicate id":    ok + "\n" + ok,
		"unknown kind":    entry(t, func(m map[string]any) { m["kind"] = "sms" }),
		"wrong route":     entry(t, func(m map[string]any) { m["route"] = "/twilio/voice/dial" }),
		"no source":       entry(t, func(m map[string]any) { m["source"] = "" }),
		"no id":           entry(t, func(m map[string]any) { m["id"] = "" }),
		"method":          entry(t, func(m map[string]any) { m["method"] = "PUT" }),
		"params and body": entry(t, func(m map[string]any) { m["body"] = "[]" }),
		"no params":       entry(t, func(m map[string]any) { delete(m, "params"); delete(m, "raw") }),
		"raw disagrees":   entry(t, func(m map[string]any) { m["raw"] = "CallSid=CA2&CallStatus=completed" }),
		"raw misordered":  entry(t, func(m map[string]any) { m["raw"] = "CallStatus=completed&CallSid=CA1" }),
		"raw bad escape":  entry(t, func(m map[string]any) { m["raw"] = "CallSid=%zz" }),
		"unknown field":   entry(t, func(m map[string]any) { m["extra"] = 1 }),
		"param arity":     entry(t, func(m map[string]any) { m["params"] = [][]string{{"CallSid"}}; delete(m, "raw") }),
		"form as JSON":    entry(t, func(m map[string]any) { m["content_type"] = "application/json" }),
		"blank line":      ok + "\n\n",
		"events no body": entry(t, func(m map[string]any) {
			m["kind"], m["route"], m["content_type"] = "events", "/twilio/events", "application/json"
			delete(m, "raw")
		}),
		"events bad JSON": entry(t, func(m map[string]any) {
			m["kind"], m["route"], m["content_type"], m["body"] = "events", "/twilio/events", "application/json", "[{"
			delete(m, "params")
			delete(m, "raw")
		}),
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := realcorpus.Parse(strings.NewReader(text)); err == nil {
				t.Fatalf("accepted %s", text)
			}
		})
	}
}

func TestParseFormKeepsOrderAndDuplicates(t *testing.T) {
	got, err := realcorpus.ParseForm("b=2&a=1&b=3&Flag&c=x+y%20z&&d=")
	if err != nil {
		t.Fatal(err)
	}
	want := []realcorpus.Param{
		{Name: "b", Value: "2"}, {Name: "a", Value: "1"}, {Name: "b", Value: "3"},
		{Name: "Flag", Value: ""}, {Name: "c", Value: "x y z"}, {Name: "d", Value: ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("param %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`{"id":"x","kind":"status","route":"/twilio/voice/status","method":"POST","content_type":"application/x-www-form-urlencoded","params":[["CallSid","CA1"]],"raw":"CallSid=CA1","source":"s","license":"","notes":""}`)
	f.Add(`{"id":"e","kind":"events","route":"/twilio/events","method":"POST","content_type":"application/json","body":"[]","source":"s","license":"","notes":""}`)
	f.Fuzz(func(t *testing.T, text string) {
		ps, err := realcorpus.Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		ids := map[string]bool{}
		for _, p := range ps {
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted an invalid payload: %v", err)
			}
			if ids[p.ID] {
				t.Fatalf("accepted duplicate id %q", p.ID)
			}
			ids[p.ID] = true
		}
	})
}
