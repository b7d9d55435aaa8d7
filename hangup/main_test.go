package hangup_test

import (
	"os"
	"testing"

	"github.com/callledger/callledger/internal/stuckreport"
)

// TestMain runs the tests under a watchdog that reports, before go test's
// timeout and at the end of the log, where a stuck test waits.
func TestMain(m *testing.M) { os.Exit(stuckreport.Run(m)) }
