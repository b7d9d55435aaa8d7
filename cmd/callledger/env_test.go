package main

import (
	"io"
	"testing"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
)

// TestEnvFallbacks: a flag set on the command line wins over its
// CALLLEDGER_ variable, which wins over the variable of envFallbacks; that
// one applies only when neither is set.
func TestEnvFallbacks(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		callledger string // CALLLEDGER_AUTH_TOKEN
		twilio     string // TWILIO_AUTH_TOKEN
		want       string
	}{
		{"none", nil, "", "", ""},
		{"Twilio's variable alone", nil, "", "from-twilio", "from-twilio"},
		{"CALLLEDGER_ wins", nil, "from-callledger", "from-twilio", "from-callledger"},
		{"the flag wins", []string{"--auth-token", "from-flag"}, "from-callledger", "from-twilio", "from-flag"},
		{"the flag wins over Twilio's", []string{"--auth-token", "from-flag"}, "", "from-twilio", "from-flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CALLLEDGER_AUTH_TOKEN", tc.callledger)
			t.Setenv("TWILIO_AUTH_TOKEN", tc.twilio)
			cmd := serveCommand(io.Discard, io.Discard)
			if err := ff.Parse(cmd.FlagSet, tc.args, cmd.Options...); err != nil {
				t.Fatal(err)
			}
			if err := applyEnvFallbacks(cmd.FlagSet, envFallbacks[cmd.Name]); err != nil {
				t.Fatal(err)
			}
			if got := cmd.FlagSet.Lookup("auth-token").Value.String(); got != tc.want {
				t.Errorf("--auth-token = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestEnvFallbacksNameFlags: every entry of envFallbacks names a flag of
// its subcommand.
func TestEnvFallbacksNameFlags(t *testing.T) {
	t.Parallel()
	subs := map[string]*ffcli.Command{}
	for _, c := range subcommands(io.Discard, io.Discard) {
		subs[c.Name] = c
	}
	for sub, flags := range envFallbacks {
		c := subs[sub]
		if c == nil {
			t.Errorf("envFallbacks names subcommand %q", sub)
			continue
		}
		for name := range flags {
			if c.FlagSet.Lookup(name) == nil {
				t.Errorf("envFallbacks names --%s, which %s lacks", name, sub)
			}
		}
	}
}
