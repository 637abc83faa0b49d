// Package emulatortest runs the cohort stage's embedded SQL against goccy/bigquery-emulator
// in-process, loaded with idcfixture tables. It holds only tests, in their own package, so
// that other packages' tests do not pay the emulator's ~270 MB link.
package emulatortest
