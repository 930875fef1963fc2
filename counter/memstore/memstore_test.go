package memstore

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/counter"
	"github.com/tollgate/tollgate/counter/countertest"
)

func harness() countertest.Harness {
	return countertest.Harness{
		Persistent: true,
		Storage: func(t *testing.T, clock func() time.Time) func() counter.Backend {
			dir := t.TempDir()
			return func() counter.Backend {
				s, err := Open(Options{Dir: dir, Clock: clock})
				require.NoError(t, err)
				return s
			}
		},
	}
}

func TestContract(t *testing.T) {
	countertest.Run(t, harness())
}
