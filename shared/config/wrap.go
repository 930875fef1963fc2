package config

// Wrap returns an error that reads prefix, err's message, then suffix, and
// unwraps to err: what fmt.Errorf(prefix+"%w"+suffix, err) gives. Packages
// linked into the Wasm modules build their errors with it, strconv and
// concatenation, because fmt (with the reflection it keeps) costs about
// 380 KB in every module.
func Wrap(prefix string, err error, suffix string) error {
	return &wrapError{prefix: prefix, err: err, suffix: suffix}
}

// wrapError is Wrap's error; its message is built when it is read.
type wrapError struct {
	prefix, suffix string
	err            error
}

func (e *wrapError) Error() string {
	msg := "<nil>"
	if e.err != nil {
		msg = e.err.Error()
	}
	return e.prefix + msg + e.suffix
}

func (e *wrapError) Unwrap() error { return e.err }

// Wrap2 returns an error that reads err1's message, middle, then err2's
// message, and unwraps to both: what fmt.Errorf("%w"+middle+"%w", err1,
// err2) gives.
func Wrap2(err1 error, middle string, err2 error) error {
	return &wrap2Error{err1: err1, middle: middle, err2: err2}
}

// wrap2Error is Wrap2's error.
type wrap2Error struct {
	err1, err2 error
	middle     string
}

func (e *wrap2Error) Error() string {
	return (&wrapError{err: e.err1, suffix: e.middle}).Error() + (&wrapError{err: e.err2}).Error()
}

func (e *wrap2Error) Unwrap() []error { return []error{e.err1, e.err2} }

// Clip returns s cut to at most n runes, as the precision of fmt's %.200s
// does, so an upstream's message cannot blow up an error or a log line.
func Clip(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}
