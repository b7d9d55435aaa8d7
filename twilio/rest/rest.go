// Package rest is callledger's use of Twilio's REST API through twilio-go:
// per-account credentials (an auth token or an API key), a context for
// every request (twilio-go has none of its own), and Twilio's errors turned
// into one typed error that says whether a retry can help.
//
// Consumers (the command service, the reconciler) declare the small
// interfaces they need; *Client implements them.
package rest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/twilio/twilio-go/client"
	api "github.com/twilio/twilio-go/rest/api/v2010"
)

// DefaultTimeout bounds one REST request, as twilio-go's own client does.
const DefaultTimeout = 10 * time.Second

// Config wires a Client.
type Config struct {
	// Accounts whose calls callledger may read and end; the first is the
	// default for calls whose account is unknown. At least one.
	Accounts []Account
	// Transport carries the requests; nil means http.DefaultTransport.
	// Tests point it at a fake Twilio.
	Transport http.RoundTripper
	// Timeout bounds one request; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Client calls Twilio's REST API for the configured accounts. It is safe
// for concurrent use.
type Client struct {
	// creds are the accounts' credentials, replaced whole by SetAccounts.
	creds     atomic.Pointer[credentials]
	transport http.RoundTripper
	timeout   time.Duration
}

// credentials are the accounts of a Client at one time.
type credentials struct {
	accounts map[string]Account
	first    string
}

// New validates cfg and builds a Client.
func New(cfg Config) (*Client, error) {
	c := &Client{transport: cfg.Transport, timeout: cfg.Timeout}
	if err := c.SetAccounts(cfg.Accounts); err != nil {
		return nil, err
	}
	if c.transport == nil {
		c.transport = http.DefaultTransport
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// SetAccounts replaces the accounts' credentials (as Config.Accounts),
// atomically: a request already started finishes with the credentials it
// started with. Invalid accounts are refused and the Client keeps its
// credentials. A reload of the accounts file uses it, so that a rotated
// token or API key takes effect without a restart.
func (c *Client) SetAccounts(accounts []Account) error {
	if len(accounts) == 0 {
		return fmt.Errorf("no Twilio accounts: %w", ErrConfig)
	}
	cr := &credentials{accounts: make(map[string]Account, len(accounts)), first: accounts[0].AccountSid}
	for _, a := range accounts {
		if err := a.Validate(); err != nil {
			return err
		}
		if _, dup := cr.accounts[a.AccountSid]; dup {
			return fmt.Errorf("account %s configured twice: %w", a.AccountSid, ErrConfig)
		}
		cr.accounts[a.AccountSid] = a
	}
	c.creds.Store(cr)
	return nil
}

// Account picks the account to use for a call of accountSid: that one when
// configured, the default (first) one when accountSid is unknown (""), and
// ErrUnknownAccount otherwise.
func (c *Client) Account(accountSid string) (string, error) {
	_, sid, err := c.account(accountSid)
	return sid, err
}

// account returns the credentials and SID of the account to use for a
// call of accountSid, as Account picks it.
func (c *Client) account(accountSid string) (Account, string, error) {
	cr := c.creds.Load()
	if accountSid == "" {
		accountSid = cr.first
	}
	a, ok := cr.accounts[accountSid]
	if !ok {
		return Account{}, "", fmt.Errorf("account %s: %w", accountSid, ErrUnknownAccount)
	}
	return a, accountSid, nil
}

// ErrUnknownAccount reports a call of an account without credentials.
var ErrUnknownAccount = errors.New("no credentials for the Twilio account")

// service returns twilio-go's API service for one account, its requests
// bound to ctx.
func (c *Client) service(ctx context.Context, accountSid string) (*api.ApiService, error) {
	a, sid, err := c.account(accountSid)
	if err != nil {
		return nil, err
	}
	user, pass := a.basicAuth()
	tc := &client.Client{
		Credentials: client.NewCredentials(user, pass),
		HTTPClient: &http.Client{
			Transport: ctxTransport{ctx: ctx, next: c.transport},
			Timeout:   c.timeout,
			// As twilio-go's default client: never follow redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	tc.SetAccountSid(sid)
	return api.NewApiServiceWithClient(tc), nil
}

// ctxTransport binds requests to a context: twilio-go builds every request
// with context.Background().
type ctxTransport struct {
	ctx  context.Context
	next http.RoundTripper
}

func (t ctxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.next.RoundTrip(req.WithContext(t.ctx))
}

// FetchCall reads one call (Api.FetchCall).
func (c *Client) FetchCall(ctx context.Context, accountSid, callSid string) (*api.ApiV2010Call, error) {
	svc, err := c.service(ctx, accountSid)
	if err != nil {
		return nil, err
	}
	call, err := svc.FetchCall(callSid, nil)
	if err != nil {
		return nil, wrap(ctx, "fetch call "+callSid, err)
	}
	return call, nil
}

// maxChildren bounds the child legs listed for one parent.
const maxChildren = 200

// ListChildCalls lists the legs a call dialled (Api.ListCall with
// ParentCallSid), up to 200.
func (c *Client) ListChildCalls(ctx context.Context, accountSid, parentSid string) ([]api.ApiV2010Call, error) {
	svc, err := c.service(ctx, accountSid)
	if err != nil {
		return nil, err
	}
	calls, err := svc.ListCall((&api.ListCallParams{}).SetParentCallSid(parentSid).SetPageSize(50).SetLimit(maxChildren))
	if err != nil {
		return nil, wrap(ctx, "list children of "+parentSid, err)
	}
	return calls, nil
}

// UpdateCallStatus sets a call's Status (Api.UpdateCall): "completed" hangs
// up an answered call, "canceled" one still queued or ringing.
func (c *Client) UpdateCallStatus(ctx context.Context, accountSid, callSid, status string) (*api.ApiV2010Call, error) {
	svc, err := c.service(ctx, accountSid)
	if err != nil {
		return nil, err
	}
	call, err := svc.UpdateCall(callSid, (&api.UpdateCallParams{}).SetStatus(status))
	if err != nil {
		return nil, wrap(ctx, "update call "+callSid, err)
	}
	return call, nil
}

// Error is a failed REST request. Status and Code are Twilio's when Twilio
// answered (Code 20404 and Status 404 for an unknown call), zero when it
// was not reached.
type Error struct {
	Op     string
	Status int
	Code   int
	// Message is Twilio's message when it answered, else a short reason
	// (a timeout, a failed name resolution, a refused connection) that
	// names no URL, address or resolver: it is recorded in events and shown
	// to clients. Error() and Err have the details, for logs.
	Message string
	// Err is the underlying error: *client.TwilioRestError or a transport
	// error.
	Err error
}

func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("twilio: %s: HTTP %d, error %d: %s", e.Op, e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("twilio: %s: %v", e.Op, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// NotFound reports that Twilio has no such resource.
func (e *Error) NotFound() bool { return e.Status == http.StatusNotFound }

// Temporary reports whether a retry may succeed: Twilio was not reached,
// or answered 429 or a 5xx.
func (e *Error) Temporary() bool {
	return e.Status == 0 || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// RateLimited reports Twilio's 429 (Too Many Requests; error 20429).
func (e *Error) RateLimited() bool { return e.Status == http.StatusTooManyRequests }

func wrap(ctx context.Context, op string, err error) error {
	var tre *client.TwilioRestError
	if errors.As(err, &tre) {
		return &Error{Op: op, Status: tre.Status, Code: tre.Code, Message: tre.Message, Err: err}
	}
	var v1 *client.RestErrorV1
	if errors.As(err, &v1) {
		return &Error{Op: op, Status: v1.HttpStatusCode, Code: v1.Code, Message: v1.Message, Err: err}
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return &Error{Op: op, Message: unreached(err), Err: err}
}

// unreached says why Twilio was not reached without quoting err, whose
// text holds the request's URL and often the resolver's or a proxy's
// address.
func unreached(err error) string {
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "Twilio's REST API was not reached: the request was canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "Twilio's REST API did not answer in time"
	case errors.As(err, &dns):
		return "Twilio's REST API was not reached: its name did not resolve"
	}
	return "Twilio's REST API was not reached"
}
