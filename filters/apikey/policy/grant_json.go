package policy

import (
	"time"

	"github.com/tollgate/tollgate/keystore/model"
	"github.com/tollgate/tollgate/shared/jsonenc"
)

// appendGrant writes g as the JSON object (jsonenc.AppendField puts the commas) the cache holds (the field names
// of Grant's json tags, empty fields left out), without encoding/json's
// reflection; Grant.DecodeConfig reads it back.
func appendGrant(b []byte, g *Grant) []byte {
	b = append(b, '{')
	b = jsonenc.AppendField(b, "a")
	b = jsonenc.AppendString(b, g.App)
	if g.KeyID != "" {
		b = jsonenc.AppendField(b, "k")
		b = jsonenc.AppendString(b, g.KeyID)
	}
	if g.Developer != "" {
		b = jsonenc.AppendField(b, "d")
		b = jsonenc.AppendString(b, g.Developer)
	}
	if len(g.Products) > 0 {
		b = jsonenc.AppendField(b, "p")
		b = appendStrings(b, g.Products)
	}
	if len(g.Entitlements) > 0 {
		b = jsonenc.AppendField(b, "e")
		b = append(b, '[')
		for i := range g.Entitlements {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendEntitlement(b, &g.Entitlements[i])
		}
		b = append(b, ']')
	}
	if !g.ExpiresAt.IsZero() {
		b = jsonenc.AppendField(b, "x")
		b = jsonenc.AppendString(b, g.ExpiresAt.Format(time.RFC3339Nano))
	}
	return append(b, '}')
}

func appendEntitlement(b []byte, e *model.Entitlement) []byte {
	b = append(b, '{')
	b = jsonenc.AppendField(b, "product")
	b = jsonenc.AppendString(b, e.Product)
	b = jsonenc.AppendField(b, "operations")
	if e.Operations == nil {
		b = append(b, "null"...)
	} else {
		b = appendOperations(b, e.Operations)
	}
	b = jsonenc.AppendField(b, "allowed_models")
	b = appendStrings(b, e.AllowedModels)
	if len(e.Attributes) > 0 {
		b = jsonenc.AppendField(b, "attributes")
		b = append(b, '{')
		for k, v := range e.Attributes {
			b = jsonenc.AppendField(b, k)
			b = jsonenc.AppendString(b, v)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

func appendQuota(b []byte, q *model.QuotaSpec) []byte {
	b = append(b, '{')
	b = jsonenc.AppendField(b, "limit")
	b = jsonenc.AppendInt(b, q.Limit)
	b = jsonenc.AppendField(b, "interval")
	b = jsonenc.AppendInt(b, q.Interval)
	b = jsonenc.AppendField(b, "time_unit")
	b = jsonenc.AppendString(b, q.TimeUnit)
	b = jsonenc.AppendField(b, "window")
	b = jsonenc.AppendString(b, q.Window)
	if q.Counted != "" {
		b = jsonenc.AppendField(b, "counted")
		b = jsonenc.AppendString(b, q.Counted)
	}
	b = jsonenc.AppendField(b, "scope")
	b = jsonenc.AppendString(b, q.Scope)
	return append(b, '}')
}

// appendStrings writes a string array; nil is null, as encoding/json writes it.
func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.AppendString(b, s)
	}
	return append(b, ']')
}

// appendOperations writes an entitlement's operations array.
func appendOperations(b []byte, ops []model.OperationGrant) []byte {
	b = append(b, '[')
	for i := range ops {
		if i > 0 {
			b = append(b, ',')
		}
		op := &ops[i]
		b = append(b, '{')
		b = jsonenc.AppendField(b, "path")
		b = jsonenc.AppendString(b, op.Path)
		b = jsonenc.AppendField(b, "methods")
		b = appendStrings(b, op.Methods)
		if op.RequestQuota != nil {
			b = jsonenc.AppendField(b, "request_quota")
			b = appendQuota(b, op.RequestQuota)
		}
		if op.TokenQuota != nil {
			b = jsonenc.AppendField(b, "token_quota")
			b = appendQuota(b, op.TokenQuota)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	return b
}
