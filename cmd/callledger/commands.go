package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/callledger/callledger/eventstore"
	"github.com/callledger/callledger/reconcile"
	"github.com/callledger/callledger/services/command"
	"github.com/callledger/callledger/twilio/rest"
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
	fs.StringVar(&c.accountsFile, "twilio-accounts", "", `JSON file of Twilio REST credentials per account: {"accounts":[{"account_sid":"AC…","auth_token":"…"} or {"account_sid":"AC…","api_key_sid":"SK…","api_key_secret":"…"}]}`)
	fs.StringVar(&c.accountSid, "twilio-account-sid", "", "one Twilio account for REST calls, with --twilio-api-key/--twilio-api-secret or else the auth token; falls back to TWILIO_ACCOUNT_SID")
	fs.StringVar(&c.apiKey, "twilio-api-key", "", "API key SID (SK…) for REST calls; falls back to TWILIO_API_KEY")
	fs.StringVar(&c.apiSecret, "twilio-api-secret", "", "API key secret for REST calls; falls back to TWILIO_API_SECRET")
	fs.DurationVar(&c.hangupAfter, "reconcile-hangup-after", reconcile.DefaultHangupAfter, "reconcile a call whose hang-up was requested this long ago without a terminal report")
	fs.DurationVar(&c.idleAfter, "reconcile-idle-after", reconcile.DefaultIdleAfter, "reconcile a call not terminal and without any event for this long")
	fs.DurationVar(&c.placeholderAfter, "reconcile-placeholder-after", reconcile.DefaultPlaceholderAfter, "reconcile a call known only from another leg after this long")
	fs.Float64Var(&c.rate, "reconcile-rate", reconcile.DefaultRate, "REST requests per second per account of the reconciler")
	fs.IntVar(&c.burst, "reconcile-burst", reconcile.DefaultBurst, "REST requests the reconciler may send at once per account")
}

// accounts gathers the REST credentials: the file's accounts, then the
// single account of --twilio-account-sid with an API key or, failing
// that, authToken (the webhook token; "" in development mode). None means
// REST is off.
func (c *commandFlags) accounts(authToken string) ([]rest.Account, error) {
	var out []rest.Account
	if c.accountsFile != "" {
		file, err := rest.LoadAccountsFile(c.accountsFile)
		if err != nil {
			return nil, fmt.Errorf("--twilio-accounts: %w", err)
		}
		out = append(out, file...)
	}
	sid, key, secret := orEnv(c.accountSid, "TWILIO_ACCOUNT_SID"), orEnv(c.apiKey, "TWILIO_API_KEY"), orEnv(c.apiSecret, "TWILIO_API_SECRET")
	switch {
	case sid == "":
	case key != "" || secret != "":
		out = append(out, rest.Account{AccountSid: sid, APIKeySid: key, APIKeySecret: secret})
	case authToken != "":
		out = append(out, rest.Account{AccountSid: sid, AuthToken: authToken})
	default:
		return nil, fmt.Errorf("--twilio-account-sid %s: needs --twilio-api-key and --twilio-api-secret, or a Twilio auth token", sid)
	}
	return out, nil // rest.New validates them
}

func orEnv(v, env string) string {
	if v != "" {
		return v
	}
	return os.Getenv(env)
}

// startCommands registers CallCommandService on g and, when REST
// credentials are configured, starts the reconciler; the returned func
// stops it. authToken is the real webhook token ("" in development mode);
// onAction counts the reconciler's actions.
func startCommands(ctx context.Context, cfg commandFlags, authToken string, store eventstore.Store, calls reconcile.Calls, g *grpc.Server, onAction func(string), logger *slog.Logger) (func(), error) {
	accounts, err := cfg.accounts(authToken)
	if err != nil {
		return nil, err
	}
	var client *rest.Client
	if len(accounts) > 0 {
		if client, err = rest.New(rest.Config{Accounts: accounts}); err != nil {
			return nil, err
		}
	}
	cc := command.Config{Store: store, Calls: calls, Logger: logger}
	if client != nil {
		cc.Twilio = client // a nil *rest.Client must not become a non-nil interface
	}
	cmds, err := command.New(cc)
	if err != nil {
		return nil, err
	}
	cmds.Register(g)
	if client == nil {
		logger.Info("no Twilio REST credentials: reconciliation off, RequestHangup records requests without ending calls " +
			"(set --twilio-accounts, or --twilio-account-sid with an API key or the auth token)")
		return func() {}, nil
	}
	rec, err := reconcile.New(reconcile.Config{
		Calls: calls, Store: store, Twilio: client, Logger: logger,
		HangupAfter: cfg.hangupAfter, IdleAfter: cfg.idleAfter, PlaceholderAfter: cfg.placeholderAfter,
		Rate: cfg.rate, Burst: cfg.burst, OnAction: onAction,
	})
	if err != nil {
		return nil, err
	}
	sids := make([]string, len(accounts))
	for i, a := range accounts {
		sids[i] = a.AccountSid
	}
	logger.Info("reconciliation on", "accounts", sids, "hangup_after", cfg.hangupAfter, "idle_after", cfg.idleAfter,
		"placeholder_after", cfg.placeholderAfter, "rate", cfg.rate)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rec.Run(rctx); err != nil {
			logger.Error("reconciler stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}
