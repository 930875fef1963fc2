package keystore

import (
	"log/slog"
	"time"
)

// Short aliases keep the LogAttrs calls (no allocation when disabled) readable.
const (
	slogDebug = slog.LevelDebug
	slogInfo  = slog.LevelInfo
	slogWarn  = slog.LevelWarn
	slogError = slog.LevelError
)

func attrStr(k, v string) slog.Attr               { return slog.String(k, v) }
func attrInt(k string, v int) slog.Attr           { return slog.Int(k, v) }
func attrDur(k string, v time.Duration) slog.Attr { return slog.Duration(k, v) }
func attrErr(err error) slog.Attr                 { return slog.String("error", err.Error()) }
