package scoring

import "github.com/cleanprod/cleanprod/store"

// The stores implement what the engine consumes.
var (
	_ History = (*store.Bolt)(nil)
	_ Sink    = (*store.Bolt)(nil)
	_ History = (*store.Influx)(nil)
	_ Sink    = (*store.Influx)(nil)
)
