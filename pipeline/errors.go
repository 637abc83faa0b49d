package pipeline

import (
	"errors"
	"fmt"
)

// Error classes recorded in failures.arrow. Stages may use others; these are the common ones.
const (
	ClassInput    = "bad_input" // the item's data is malformed or inconsistent
	ClassDICOM    = "dicom"     // a DICOM object cannot be read or is not usable
	ClassGeometry = "geometry"  // slice geometry does not allow the crop
	ClassNetwork  = "network"   // a download failed after retries
	ClassNotFound = "not_found" // an object or row does not exist
	ClassChecksum = "checksum"  // content does not match its checksum
	ClassModel    = "model"     // inference failed for this item
	ClassTimeout  = "timeout"   // the item's deadline passed
	ClassUnknown  = "error"     // anything else
)

// ItemError is a failure of one item: recorded as data, the run goes on.
type ItemError struct {
	Class string
	Item  string
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("%s: %v", e.Item, e.Err) }
func (e *ItemError) Unwrap() error { return e.Err }

// Itemf builds an *ItemError for item with a formatted cause (%w is honoured).
func Itemf(class, item, format string, args ...any) *ItemError {
	return &ItemError{Class: class, Item: item, Err: fmt.Errorf(format, args...)}
}

// HaltError stops the whole run (bad config, unreachable service, GPU init, schema mismatch).
type HaltError struct{ Err error }

func (e *HaltError) Error() string { return e.Err.Error() }
func (e *HaltError) Unwrap() error { return e.Err }

// Halt marks err, which already says what failed, as stopping the run.
func Halt(err error) *HaltError { return &HaltError{Err: err} }

// Haltf builds a *HaltError with a formatted cause (%w is honoured).
func Haltf(format string, args ...any) *HaltError {
	return &HaltError{Err: fmt.Errorf(format, args...)}
}

// ErrorClass returns the class of an item error, or ClassUnknown.
func ErrorClass(err error) string {
	var ie *ItemError
	if errors.As(err, &ie) && ie.Class != "" {
		return ie.Class
	}
	return ClassUnknown
}

// IsHalt reports whether err must stop the run.
func IsHalt(err error) bool {
	var he *HaltError
	return errors.As(err, &he)
}

// UsageError is a command-line mistake (exit status 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// ErrInterrupted is returned (wrapped) when the run was stopped by a signal or cancellation.
var ErrInterrupted = errors.New("interrupted")
