package board_test

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callledger/callledger/board"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	resp := rec.Result()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestPage: the page, its assets and its settings are served, locked to
// the page's own origin.
func TestPage(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	h, err := board.New(board.Config{HangupAfter: 5 * time.Second, EndCalls: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	resp, page := get(t, h, "/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	// Every asset the page names is served, as what it is.
	types := map[string]string{".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		resp, _ := get(t, h, "/"+m[1])
		ext := m[1][strings.LastIndex(m[1], "."):]
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), types[ext]) {
			t.Errorf("GET /%s: HTTP %d %s", m[1], resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	resp, body := get(t, h, "/config.json")
	var cfg struct {
		NoticeAfterMs int64 `json:"noticeAfterMs"`
		EndCalls      bool  `json:"endCalls"`
		ServerTimeMs  int64 `json:"serverTimeMs"`
	}
	if err := json.Unmarshal([]byte(body), &cfg); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("config.json: HTTP %d %v: %s", resp.StatusCode, err, body)
	}
	if cfg.NoticeAfterMs != (5*time.Second+board.Grace).Milliseconds() || !cfg.EndCalls || cfg.ServerTimeMs != now.UnixMilli() {
		t.Errorf("config.json %+v", cfg)
	}
	if resp, _ := get(t, h, "/nothing.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing.js: HTTP %d", resp.StatusCode)
	}
	if _, err := board.New(board.Config{}); err == nil {
		t.Error("New without HangupAfter succeeded")
	}
}

// TestOffline: the page loads nothing from elsewhere (no CDN, no web
// font), so it works without a network, and the token never goes into a
// URL or local storage.
func TestOffline(t *testing.T) {
	files := os.DirFS("static")
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`)
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		text := string(data)
		if strings.HasSuffix(path, ".svg") {
			text = strings.ReplaceAll(text, "http://www.w3.org/2000/svg", "") // a namespace, not a fetch
		}
		if m := external.FindString(text); m != "" {
			t.Errorf("%s refers to %q: the board must not load anything from elsewhere", path, m)
		}
		if strings.Contains(text, "localStorage") {
			t.Errorf("%s uses localStorage; the token belongs in session storage", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
