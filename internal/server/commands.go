package server

import (
	"context"
	"fmt"
	"slices"

	"github.com/callledger/callledger/internal/grpcauth"
	"github.com/callledger/callledger/reconcile"
	"github.com/callledger/callledger/services/command"
	"github.com/callledger/callledger/twilio/rest"
)

// accounts gathers the REST credentials: the accounts of the file
// (AccountsFile, read by the caller), then the single account of
// AccountSid with an API key or, failing that, authToken (the webhook
// token; "" in development mode, whose token is no REST credential). None
// means REST is off.
func (c Twilio) accounts(file []rest.Account, authToken string) ([]rest.Account, error) {
	out := slices.Clone(file)
	switch {
	case c.AccountSid == "":
	case c.APIKeySid != "" || c.APIKeySecret != "":
		out = append(out, rest.Account{AccountSid: c.AccountSid, APIKeySid: c.APIKeySid, APIKeySecret: c.APIKeySecret})
	case authToken != "":
		out = append(out, rest.Account{AccountSid: c.AccountSid, AuthToken: authToken})
	default:
		return nil, fmt.Errorf("--twilio-account-sid %s: needs --twilio-api-key and --twilio-api-secret, or a Twilio auth token", c.AccountSid)
	}
	return out, nil // rest.New validates them
}

// commands builds CallCommandService and, when REST credentials are
// configured, the reconciler (nil otherwise), which Run starts. authToken
// is the real webhook token ("" in development mode).
func (s *Server) commands(authToken string, file []rest.Account, calls reconcile.Calls) (*command.Server, *reconcile.Reconciler, error) {
	accounts, err := s.cfg.Twilio.accounts(file, authToken)
	if err != nil {
		return nil, nil, err
	}
	var client *rest.Client
	if len(accounts) > 0 {
		if client, err = rest.New(rest.Config{Accounts: accounts, Transport: s.cfg.Seams.RESTTransport}); err != nil {
			return nil, nil, err
		}
	}
	s.restOn = client != nil
	cc := command.Config{Store: s.store, Calls: calls, Logger: s.log, Principal: principal}
	if s.personal != nil {
		cc.Personal = s.personal
	}
	if client != nil {
		cc.Twilio = client // a nil *rest.Client must not become a non-nil interface
		s.rest = client
	}
	cmds, err := command.New(cc)
	if err != nil {
		return nil, nil, err
	}
	if client == nil {
		s.log.Info("no Twilio REST credentials: reconciliation off, RequestHangup records requests without ending calls " +
			"(set --twilio-accounts, or --twilio-account-sid with an API key or the auth token)")
		return cmds, nil, nil
	}
	rc := s.cfg.Reconcile
	rec, err := reconcile.New(reconcile.Config{
		Calls: calls, Store: s.store, Twilio: client, Logger: s.log,
		HangupAfter: rc.HangupAfter, IdleAfter: rc.IdleAfter, PlaceholderAfter: rc.PlaceholderAfter,
		Rate: rc.Rate, Burst: rc.Burst, Interval: rc.Interval, OnAction: s.tel.reconciler.Action,
		Sealer: s.sealer(),
	})
	if err != nil {
		return nil, nil, err
	}
	sids := make([]string, len(accounts))
	for i, a := range accounts {
		sids[i] = a.AccountSid
	}
	s.log.Info("reconciliation on", "accounts", sids, "hangup_after", rc.HangupAfter, "idle_after", rc.IdleAfter,
		"placeholder_after", rc.PlaceholderAfter, "rate", rc.Rate)
	return cmds, rec, nil
}

// principal is the authenticated caller of a gRPC call, for the audit
// trail of the commands.
func principal(ctx context.Context) (string, bool) {
	p, ok := grpcauth.PrincipalFrom(ctx)
	return p.Name, ok
}
