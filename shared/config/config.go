// Package config decodes the filters' JSON plugin configurations the one
// strict way, so that every filter refuses the same mistakes with the same
// words: an unknown field or a case variant of a known one (a typo must
// never silently turn a setting off), a value of the wrong type, duplicate
// keys, data after the document, and malformed JSON, located by byte offset.
// It reads the document with shared/reqview and walks it with generated
// field tables (Decoder), so Wasm modules link no reflection-based decoder.
package config

import (
	"bytes"
	"errors"
	"io"
	"strconv"

	"github.com/tollgate/tollgate/shared/reqview"
)

// ErrTrailingData reports data after the JSON document.
var ErrTrailingData = errors.New("trailing data after the JSON object")

// trailingMsg is how reqview.Parse words data after a complete document.
const trailingMsg = "trailing data after the JSON value"

// MaxDepth bounds the nesting of a configuration document.
const MaxDepth = 32

// Decode fills v from the JSON document data. Unknown fields are errors,
// and so is anything but white space after the document; a syntax error
// says at which byte it is, a type error names the field by its path. A
// blank document is io.EOF: filters whose defaults need no settings check
// for a blank configuration before calling Decode.
func Decode(data []byte, v Fields) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return io.EOF
	}
	doc, err := reqview.Parse(data, reqview.Limits{MaxBytes: len(data) + 1, MaxDepth: MaxDepth})
	if err != nil {
		return syntaxError(data, err)
	}
	return Object(doc.Root(), "", v)
}

// syntaxError words a refusal of reqview.Parse for an operator: what is
// wrong and at which byte, wrapping io.ErrUnexpectedEOF for a truncated
// document and ErrTrailingData for data after it.
func syntaxError(data []byte, err error) error {
	var re *reqview.Error
	if !errors.As(err, &re) {
		return err
	}
	msg := "invalid JSON: " + re.Msg
	if re.Offset >= 0 {
		msg += " (at byte " + strconv.Itoa(re.Offset) + ")"
	}
	switch {
	case re.Code == reqview.CodeTooDeep:
		return errors.New("configuration nests deeper than " + strconv.Itoa(MaxDepth) + " levels")
	case re.Offset >= len(bytes.TrimRight(data, " \t\r\n")):
		return Wrap("", io.ErrUnexpectedEOF, ": "+msg)
	case re.Msg == trailingMsg:
		return Wrap("", ErrTrailingData, ": "+msg)
	}
	return errors.New(msg)
}
