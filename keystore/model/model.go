// Package model holds the keystore's data model (API products, operation
// sets, developers, apps, keys), its validation and the pure matching rules
// that decide whether a key may call an operation. It depends only on the
// standard library so the Wasm apikey filter can reuse the same rules in its
// local mode.
package model

import (
	"time"
)

// Time units a quota interval is counted in, as Apigee names them.
const (
	UnitMinute = "minute"
	UnitHour   = "hour"
	UnitDay    = "day"
	UnitMonth  = "month"
)

// Quota window kinds, following Apigee's Quota policy types.
const (
	// WindowCalendar resets at fixed calendar boundaries (top of the minute, hour, day, month).
	WindowCalendar = "calendar"
	// WindowRolling looks back one interval from every request.
	WindowRolling = "rolling"
	// WindowFlexi starts an interval at the first request the app makes.
	WindowFlexi = "flexi"
)

// What a token quota counts from the response usage.
const (
	CountedTotal      = "total"
	CountedPrompt     = "prompt"
	CountedCompletion = "completion"
	CountedCost       = "cost"
)

// Key statuses, as Apigee names them.
const (
	KeyApproved = "approved"
	KeyRevoked  = "revoked"
)

//go:generate go run github.com/tollgate/tollgate/scripts/configgen -type Product,OperationSet,Entitlement

// Quota is a limit over an interval: how many requests (request quota) or
// tokens (token quota) an app may use per product, operation or operation set.
type Quota struct {
	Limit    int64  `json:"limit" yaml:"limit"`
	Interval int64  `json:"interval,omitempty" yaml:"interval"`
	TimeUnit string `json:"timeUnit" yaml:"timeUnit"`
	Window   string `json:"window,omitempty" yaml:"window"`
	// Counted applies to token quotas only: which usage figure is charged.
	Counted string `json:"counted,omitempty" yaml:"counted"`
}

// Operation is one path pattern plus the methods allowed on it; its quotas,
// when set, override the product's for requests that match it.
type Operation struct {
	Path         string   `json:"path" yaml:"path"`
	Methods      []string `json:"methods,omitempty" yaml:"methods"`
	RequestQuota *Quota   `json:"requestQuota,omitempty" yaml:"requestQuota"`
	TokenQuota   *Quota   `json:"tokenQuota,omitempty" yaml:"tokenQuota"`
}

// OperationSet is a named, reusable list of operations that several products
// can include, so an API surface is declared once.
type OperationSet struct {
	Name        string      `json:"name" yaml:"-"`
	Description string      `json:"description,omitempty" yaml:"description"`
	Operations  []Operation `json:"operations" yaml:"operations"`
	// RequestQuota and TokenQuota apply to every operation of the set that has none of its own.
	RequestQuota *Quota    `json:"requestQuota,omitempty" yaml:"requestQuota"`
	TokenQuota   *Quota    `json:"tokenQuota,omitempty" yaml:"tokenQuota"`
	CreatedAt    time.Time `json:"createdAt,omitzero" yaml:"-"`
	UpdatedAt    time.Time `json:"updatedAt,omitzero" yaml:"-"`
}

// Product is an API product: the operations, models and quotas an app gets
// when it subscribes, as in Apigee.
type Product struct {
	Name          string      `json:"name" yaml:"-"`
	DisplayName   string      `json:"displayName,omitempty" yaml:"displayName"`
	Description   string      `json:"description,omitempty" yaml:"description"`
	Operations    []Operation `json:"operations,omitempty" yaml:"operations"`
	OperationSets []string    `json:"operationSets,omitempty" yaml:"operationSets"`
	// AllowedModels holds exact model names or "prefix*" patterns; empty means any model.
	AllowedModels []string          `json:"allowedModels,omitempty" yaml:"allowedModels"`
	RequestQuota  *Quota            `json:"requestQuota,omitempty" yaml:"requestQuota"`
	TokenQuota    *Quota            `json:"tokenQuota,omitempty" yaml:"tokenQuota"`
	Attributes    map[string]string `json:"attributes,omitempty" yaml:"attributes"`
	CreatedAt     time.Time         `json:"createdAt,omitzero" yaml:"-"`
	UpdatedAt     time.Time         `json:"updatedAt,omitzero" yaml:"-"`
}

// Developer owns apps; identified by e-mail address as in Apigee.
type Developer struct {
	Email      string            `json:"email"`
	Name       string            `json:"name,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	CreatedAt  time.Time         `json:"createdAt,omitzero"`
	UpdatedAt  time.Time         `json:"updatedAt,omitzero"`
}

// App is a developer's client application: it subscribes to products and owns keys.
type App struct {
	Name       string            `json:"name"`
	Developer  string            `json:"developer"`
	Products   []string          `json:"products"`
	Attributes map[string]string `json:"attributes,omitempty"`
	CreatedAt  time.Time         `json:"createdAt,omitzero"`
	UpdatedAt  time.Time         `json:"updatedAt,omitzero"`
}

// Key is an API key as stored: never the secret itself, only its SHA-256 hash
// and a short display prefix.
type Key struct {
	ID     string `json:"id"`
	App    string `json:"app"`
	Prefix string `json:"prefix"`
	Hash   string `json:"hash"`
	Status string `json:"status"`
	// Products restricts the key to a subset of its app's products; empty means all of them.
	Products  []string  `json:"products,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// Expired reports whether the key's expiry has passed at now.
func (k Key) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}
