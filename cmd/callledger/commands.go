package main

import (
	"flag"
	"time"

	"github.com/callledger/callledger/reconcile"
)

// commandFlags configure CallCommandService and the reconciler: Twilio
// REST credentials and the reconciliation thresholds.
type commandFlags struct {
	accountsFile     string
	accountSid       string
	apiKey           string
	apiSecret        string
	hangupAfter      time.Duration
	idleAfter        time.Duration
	placeholderAfter time.Duration
	rate             float64
	burst            int
}

func (c *commandFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.accountsFile, "twilio-accounts", "", `JSON file (mode 0600; re-read on SIGHUP) of Twilio accounts: the tokens their webhooks are verified with, and REST credentials: {"accounts":[{"account_sid":"AC…","auth_token":"…","auth_token_secondary":"… (during a rotation)"} or {"account_sid":"AC…","api_key_sid":"SK…","api_key_secret":"…","auth_token":"… (for its webhooks; without it, --auth-token)"}]}; a webhook is checked against the tokens of the account its AccountSid names, one without AccountSid against --auth-token`)
	fs.StringVar(&c.accountSid, "twilio-account-sid", "", "one Twilio account for REST calls, with --twilio-api-key/--twilio-api-secret or else the auth token; falls back to TWILIO_ACCOUNT_SID")
	fs.StringVar(&c.apiKey, "twilio-api-key", "", "API key SID (SK…) for REST calls; falls back to TWILIO_API_KEY")
	fs.StringVar(&c.apiSecret, "twilio-api-secret", "", "API key secret for REST calls; falls back to TWILIO_API_SECRET")
	fs.DurationVar(&c.hangupAfter, "reconcile-hangup-after", reconcile.DefaultHangupAfter, "reconcile a call whose hang-up was requested this long ago without a terminal report")
	fs.DurationVar(&c.idleAfter, "reconcile-idle-after", reconcile.DefaultIdleAfter, "reconcile a call not terminal and without any event for this long")
	fs.DurationVar(&c.placeholderAfter, "reconcile-placeholder-after", reconcile.DefaultPlaceholderAfter, "reconcile a call known only from another leg after this long")
	fs.Float64Var(&c.rate, "reconcile-rate", reconcile.DefaultRate, "REST requests per second per account of the reconciler")
	fs.IntVar(&c.burst, "reconcile-burst", reconcile.DefaultBurst, "REST requests the reconciler may send at once per account")
}
