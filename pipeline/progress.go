package pipeline

// Progress shows how far the running stages are. The command supplies it (bars on a
// terminal, periodic log lines elsewhere, see internal/console); the engine only starts and
// finishes one Bar per running stage.
type Progress interface {
	// Start begins showing a stage's items; total may be 0 until SetTotal.
	Start(stage string, total int64) Bar
}

// Bar is one running stage's progress. It is safe for concurrent use.
type Bar interface {
	SetTotal(n int64)
	Add(n int64)
	// Finish ends the display; ok is false when the stage did not complete.
	Finish(ok bool)
}

// quietProgress shows nothing: the default when the caller gives no Progress.
type quietProgress struct{}

func (quietProgress) Start(string, int64) Bar { return quietBar{} }

type quietBar struct{}

func (quietBar) SetTotal(int64) {}
func (quietBar) Add(int64)      {}
func (quietBar) Finish(bool)    {}
