package servertest_test

import (
	"net/http"
	"testing"

	"github.com/callledger/callledger/internal/server"
	"github.com/callledger/callledger/internal/server/servertest"
)

// TestStartServesAndStops: the server answers on the loopback ports it was
// given, and stop ends it cleanly, as often as it is called.
func TestStartServesAndStops(t *testing.T) {
	srv, stop := servertest.Start(t, server.Config{})
	resp, err := http.Get("http://" + srv.Addrs().HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz answered %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, err := http.Get("http://" + srv.Addrs().HTTP + "/healthz"); err == nil {
		t.Fatal("the webhook listener still answers after stop")
	}
}
