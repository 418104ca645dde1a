package ingest

import (
	"context"
	"log/slog"
	"time"

	"github.com/cleanprod/cleanprod/registry"
	"github.com/cleanprod/cleanprod/store"
)

// PointWriter is the store's point side.
type PointWriter interface {
	WritePoints(ctx context.Context, ps []store.Point) error
}

// DescribeMeters writes what reg says of every meter to the store's meter
// measurement (store.MeterMeasurement), in batches, retrying each with
// back-off until it is stored or ctx ends. Readings carry only their
// identity (enterprise, meter); dashboards find a meter's gateway,
// quantity, kind and workshop here. It runs beside ingest: a store that
// is down delays the description, never a reading.
func DescribeMeters(ctx context.Context, st PointWriter, reg *registry.Registry, at time.Time, log *slog.Logger) {
	const batch = 5000
	var ps []store.Point
	flush := func() bool {
		for wait := time.Second; ; wait = min(2*wait, time.Minute) {
			err := st.WritePoints(ctx, ps)
			if err == nil {
				ps = ps[:0]
				return true
			}
			if store.IsPermanent(err) {
				log.Error("the store refused the meters' description", "err", err)
				ps = ps[:0]
				return true
			}
			log.Warn("writing the meters' description: retrying", "err", err, "in", wait)
			select {
			case <-ctx.Done():
				return false
			case <-time.After(wait):
			}
		}
	}
	n := 0
	for _, e := range reg.Enterprises {
		for _, m := range e.Meters {
			ps = append(ps, store.MeterPoint(e.ID, m.ID, m.Gateway.ID, m.Quantity.Name, string(m.Kind), m.Workshop, m.Unit, at))
			n++
			if len(ps) == batch && !flush() {
				return
			}
		}
	}
	if len(ps) > 0 && !flush() {
		return
	}
	log.Info("meters described in the store", "meters", n)
}
