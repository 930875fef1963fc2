// Package sample holds configuration types that exercise every form
// scripts/configgen supports, so its output is tested by decoding
// documents (sample_test.go) and kept fresh by configgen's own test.
package sample

import (
	"time"

	"github.com/tollgate/tollgate/shared/config"
	"github.com/tollgate/tollgate/shared/keystoreconf"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Root

// Level is a named string type.
type Level string

// Count is a named integer type.
type Count int32

// Root is the sample configuration.
type Root struct {
	keystoreconf.Config                    // embedded from another package: its fields are Root's
	Base                                   // embedded from this package
	Name                string             `json:"name"`
	Level               Level              `json:"level"`
	Count               Count              `json:"count"`
	Big                 uint64             `json:"big"`
	Ratio               float64            `json:"ratio,omitempty"`
	On                  *bool              `json:"on"`
	Wait                config.Duration    `json:"wait"`
	When                time.Time          `json:"when"`
	Tags                []string           `json:"tags"`
	Groups              [][]string         `json:"groups"`
	Labels              map[string]string  `json:"labels"`
	Lists               map[string][]int64 `json:"lists"`
	Child               Child              `json:"child"`
	Kids                []*Child           `json:"kids"`
	ByName              map[string]*Child  `json:"by_name"`
	Maybe               *Child             `json:"maybe"`
	Untagged            string             // matched by its Go name, exactly
	Skipped             string             `json:"-"`
	unexported          string             //nolint:unused // never decoded
}

// Base is embedded in Root.
type Base struct {
	Region string `json:"region"`
}

// Child is a nested object.
type Child struct {
	ID   int    `json:"id"`
	Note string `json:"note"`
}

// Unexported is the field JSON cannot set, for the tests.
func (r *Root) Unexported() string { return r.unexported }
