package collect

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a run goroutine outlives its collector's
// Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
