package broker

import (
	"context"
	"errors"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
)

// SetOpts gives mochi's storage hook a logger that reports a key not
// found as what it is. On the first start of a data folder mochi asks the
// hook for the statistics it stored last time ($SYS); there are none yet,
// and the hook logs that at ERROR ("failed to get data", "key not
// found"), then carries on. An operator reading the log of a clean start
// must not find an error in it, so that record is written at DEBUG; every
// other record of the hook is passed on unchanged.
func (p *persistence) SetOpts(l *slog.Logger, opts *mqtt.HookOptions) {
	p.Hook.SetOpts(slog.New(notFoundIsDebug{l.Handler()}), opts)
}

// notFoundIsDebug lowers records carrying bolt.ErrKeyNotFound to DEBUG.
type notFoundIsDebug struct{ slog.Handler }

func (h notFoundIsDebug) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug {
		notFound := false
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && errors.Is(err, bolt.ErrKeyNotFound) {
				notFound = true
				return false
			}
			return true
		})
		if notFound {
			if !h.Handler.Enabled(ctx, slog.LevelDebug) {
				return nil
			}
			q := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
			r.Attrs(func(a slog.Attr) bool { q.AddAttrs(a); return true })
			r = q
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h notFoundIsDebug) WithAttrs(as []slog.Attr) slog.Handler {
	return notFoundIsDebug{h.Handler.WithAttrs(as)}
}

func (h notFoundIsDebug) WithGroup(name string) slog.Handler {
	return notFoundIsDebug{h.Handler.WithGroup(name)}
}
