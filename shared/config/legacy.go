package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// decodeLegacy is the reflection-based decoder of configurations that are
// not Decoders yet; it goes once every filter's configuration is generated.
func decodeLegacy(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return fmt.Errorf("%w (at byte %d)", err, syn.Offset)
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ErrTrailingData
	}
	return nil
}
