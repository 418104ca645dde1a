package hj212

import (
	"bufio"
	"errors"
	"io"
)

// Framer cuts a byte stream (a logger's TCP connection) into frames. It
// holds at most one frame of the configured maximum in memory whatever the
// peer sends: a bufio.Reader of MaxSegment+12 bytes, never grown.
//
// Garbage before a frame is skipped up to the next "##" and reported as an
// *Error with ReasonGarbage, at the latest every buffer-size bytes, so a
// stream of noise keeps producing errors the caller can count. After a
// rejected frame the bytes up to the next "##" are skipped without a
// separate report, up to the declared length of that frame (or one buffer
// when the length was not readable): they are its rest.
//
// A Framer is not safe for concurrent use.
type Framer struct {
	r       *bufio.Reader
	codec   *Codec
	size    int
	resync  int    // bytes that may be skipped silently: the rest of a rejected frame
	pending error  // an error to return after the current result
	scratch []byte // garbage sample for Error.Raw
}

// NewFramer reads frames from r with the limits of c (nil: defaults).
func NewFramer(r io.Reader, c *Codec) *Framer {
	if c == nil {
		c = &Codec{}
	}
	size := c.maxSegment() + 12
	return &Framer{r: bufio.NewReaderSize(r, max(size, 16)), codec: c, size: max(size, 16)}
}

// Buffered is the number of bytes read from the stream and not yet
// returned as part of a frame.
func (f *Framer) Buffered() int { return f.r.Buffered() }

// Next returns the next frame, whole ("##" to "\r\n"), or an error. A
// rejected frame or garbage gives an *Error (with Raw); reading may go on
// after it. Any other error comes from the reader (io.EOF at a clean end)
// and is final. The returned slice is valid until the next call.
func (f *Framer) Next() ([]byte, error) {
	if err := f.pending; err != nil {
		f.pending = nil
		return nil, err
	}
	if err := f.skipToStart(); err != nil {
		return nil, err
	}
	head, err := f.r.Peek(6)
	if err != nil {
		return nil, f.cut(head, err)
	}
	n, ok := parseLength(head[2:6])
	if !ok {
		return nil, f.reject(2, errorf(ReasonBadLength, "length field %q is not 4 decimal digits", head[2:6]), head)
	}
	if n > f.codec.maxSegment() {
		err := f.reject(2, errorf(ReasonTooLong, "declared segment length %d above the maximum %d", n, f.codec.maxSegment()), head)
		f.resync = n + 10 // the declared rest of the frame
		return nil, err
	}
	frame, err := f.r.Peek(12 + n)
	if err != nil {
		return nil, f.cut(frame, err)
	}
	if _, err := checkBody(frame[6:]); err != nil {
		e := err.(*Error)
		if e.Reason == ReasonBadCRC { // length and trailer right: skip the frame
			e.Raw = clip(frame)
			_, _ = f.r.Discard(len(frame))
			return nil, e
		}
		return nil, f.reject(2, e, frame)
	}
	_, _ = f.r.Discard(len(frame))
	return frame, nil
}

// reject skips n bytes, records raw and lets the next buffer's worth of
// bytes be skipped as the rest of this frame.
func (f *Framer) reject(n int, e *Error, raw []byte) error {
	e.Raw = clip(raw)
	if e.QN == "" && len(raw) > 6 {
		e.QN, e.PW, e.MN = peekIDs(raw[6:])
		if e.QN != "" && e.QnRtn == 0 {
			e.QnRtn = QnRtnUnknown
		}
	}
	_, _ = f.r.Discard(n)
	f.resync = f.size
	return e
}

// cut handles a read error inside a frame: at EOF the partial frame is
// reported as truncated and io.EOF follows; other errors (timeouts,
// resets) end the stream.
func (f *Framer) cut(partial []byte, err error) error {
	if errors.Is(err, io.EOF) && len(partial) > 0 {
		e := errorf(ReasonTruncated, "stream ended after %d bytes of a frame", len(partial))
		e.Raw = clip(partial)
		_, _ = f.r.Discard(len(partial))
		f.pending = io.EOF
		return e
	}
	return err
}

// skipToStart discards bytes until "##" and a non-'#' byte are next in
// the buffer (in a run of '#', the last two start the frame).
func (f *Framer) skipToStart() error {
	skipped, quiet := 0, f.resync
	f.resync = 0
	f.scratch = f.scratch[:0]
	garbage := func() error {
		e := errorf(ReasonGarbage, "%d bytes outside a frame", skipped)
		e.Raw = append([]byte(nil), f.scratch...)
		return e
	}
	for {
		// Look at what is buffered at once; read more only when needed.
		buf, err := f.r.Peek(max(f.r.Buffered(), 3))
		i := 0
		for ; i+2 < len(buf); i++ {
			if buf[i] == '#' && buf[i+1] == '#' && buf[i+2] != '#' {
				f.drop(buf[:i], &skipped)
				if skipped > quiet {
					return garbage()
				}
				return nil
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				f.drop(buf, &skipped) // under 3 bytes cannot start a frame
				if skipped > quiet {
					f.pending = err
					return garbage()
				}
			}
			return err
		}
		// Keep the last two bytes: they may start a frame.
		f.drop(buf[:i], &skipped)
		if skipped >= quiet+f.size-2 {
			// Endless noise: report it every buffer's worth, so the
			// caller can count and give up.
			return garbage()
		}
	}
}

func (f *Framer) drop(b []byte, skipped *int) {
	if room := RawLimit - len(f.scratch); room > 0 {
		f.scratch = append(f.scratch, b[:min(len(b), room)]...)
	}
	*skipped += len(b)
	_, _ = f.r.Discard(len(b))
}
