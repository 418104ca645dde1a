package web

import (
	"fmt"
	"time"
)

// The API's one time-zone convention: an instant (an evaluation, a
// reading, an event, a submission) is RFC 3339 with its offset; a
// calendar date (an audit's date and the next one's due date, a
// declaration's validity, a case's deadline, the day a pending code
// takes effect) is a Date, "2026-12-06", the day in the platform's zone:
// the standard's data.utc_offset (+8h for China), the zone of its daily
// buckets. Input dates are read in that zone too (parseTime).

// Date is a calendar date: "2026-12-06" in JSON, no time and no zone.
type Date struct {
	year  int
	month time.Month
	day   int
}

// dateOf returns the date of t in loc.
func dateOf(t time.Time, loc *time.Location) Date {
	y, m, d := t.In(loc).Date()
	return Date{y, m, d}
}

// datePtr returns the date of t in loc, nil for the zero time.
func datePtr(t time.Time, loc *time.Location) *Date {
	if t.IsZero() {
		return nil
	}
	d := dateOf(t, loc)
	return &d
}

// dayOf returns the last day of a deadline: the date of the instant just
// before it, so that a deadline at local midnight (a date given as the
// deadline: the end of that day) reads as that day.
func dayOf(deadline time.Time, loc *time.Location) *Date {
	if deadline.IsZero() {
		return nil
	}
	return datePtr(deadline.Add(-time.Nanosecond), loc)
}

// String returns the date as 2026-12-06.
func (d Date) String() string { return fmt.Sprintf("%04d-%02d-%02d", d.year, d.month, d.day) }

// MarshalText returns the date as 2026-12-06.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a date written as 2026-12-06.
func (d *Date) UnmarshalText(b []byte) error {
	t, err := time.Parse(time.DateOnly, string(b))
	if err != nil {
		return fmt.Errorf("date %q: want YYYY-MM-DD, e.g. 2026-12-06", b)
	}
	*d = dateOf(t, time.UTC)
	return nil
}

// In returns the start of the day in loc.
func (d Date) In(loc *time.Location) time.Time {
	return time.Date(d.year, d.month, d.day, 0, 0, 0, 0, loc)
}
