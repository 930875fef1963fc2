// Package config decodes the filters' JSON plugin configurations the one
// strict way, so that every filter refuses the same mistakes with the same
// words: an unknown field (a typo must never silently turn a setting off),
// data after the document, and malformed JSON, located by byte offset.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrTrailingData reports data after the JSON document.
var ErrTrailingData = errors.New("trailing data after the JSON object")

// Decode fills v from the JSON document data. Unknown fields are errors,
// and so is anything but white space after the document; a syntax error
// says at which byte it is, a type error names the field (encoding/json's
// own message). A blank document is io.EOF: filters whose defaults need no
// settings check for a blank configuration before calling Decode.
func Decode(data []byte, v any) error {
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
