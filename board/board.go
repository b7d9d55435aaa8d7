// Package board serves the live call board: one page, embedded in the
// binary, that shows the active calls as the server's watch stream reports
// them, grouped by call tree, with each call's legs and event timeline, a
// Hang up button, Twilio's delivery delay and the projection's lag. It is
// plain HTML, CSS and JavaScript modules (no build step, no external fonts
// or scripts: it works offline) and talks only to the REST routes of its
// own origin (services/httpapi), with the token, when the server wants
// one, kept in the tab's session storage and sent as a Bearer header.
package board

import (
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"time"
)

//go:embed static
var static embed.FS

// Grace is how long after the reconciler's wait (Config.HangupAfter) the
// board still waits for a terminal report of a call it saw hung up before
// it says none came: the reconciler's REST read, its append and the
// projection take a moment.
const Grace = 2 * time.Second

// Config is what the board needs to know of the server.
type Config struct {
	// HangupAfter is how long after a hang-up request the reconciler asks
	// Twilio about a call still without a terminal report
	// (--reconcile-hangup-after); required.
	HangupAfter time.Duration
	// EndCalls: the server has Twilio REST credentials, so Hang up ends
	// the call through Twilio (end_call) and the reconciler runs.
	// Without them the board records the request only, and says so.
	EndCalls bool
	// Now is the server's clock, which the board compares its own with;
	// default time.Now.
	Now func() time.Time
}

// settings is what /config.json tells the page.
type settings struct {
	// NoticeAfterMs: a call hung up this long ago without a terminal
	// report gets a notice.
	NoticeAfterMs int64 `json:"noticeAfterMs"`
	EndCalls      bool  `json:"endCalls"`
	// ServerTimeMs lets the page correct for its clock's offset.
	ServerTimeMs int64 `json:"serverTimeMs"`
}

// New returns the board's handler: the page and its assets, and
// /config.json.
func New(cfg Config) (http.Handler, error) {
	if cfg.HangupAfter <= 0 {
		return nil, errors.New("board: HangupAfter must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	files, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(settings{
			NoticeAfterMs: (cfg.HangupAfter + Grace).Milliseconds(),
			EndCalls:      cfg.EndCalls,
			ServerTimeMs:  cfg.Now().UnixMilli(),
		})
	})
	mux.Handle("GET /", http.FileServerFS(files))
	return secured(mux), nil
}

// secured adds the headers that keep the page to its own origin: scripts,
// styles and connections from it only, no framing, no referrer, and no
// caching, so that a new server version serves a new page at once.
func secured(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
