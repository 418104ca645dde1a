package hj212

import (
	"strconv"
	"strings"
	"time"
)

// Data is the CP of a data upload (2011, 2051, 2061, 2031).
type Data struct {
	Time    time.Time // DataTime, read in the Codec's Location
	Values  []Value
	Rejects []Reject // values refused one by one; the others are kept
}

// Value is one field of one pollutant code, e.g. w01018-Avg=23.4. Flag is
// the code's data flag (code-Flag), the same on every field of the code,
// "" when the packet sent none.
type Value struct {
	Code  string
	Field string // Rtd, Avg, Min, Max, Cou, ZsRtd, ZsAvg, ZsMin, ZsMax
	Value float64
	Flag  string
}

// Reject is an item of CP refused with its reason. Code and Field are
// empty when the key could not be read.
type Reject struct {
	Code   string
	Field  string
	Raw    string // the item as sent, clipped to 64 bytes
	Reason Reason
}

// Fields lists the value suffixes of HJ 212-2017, in the order the encoder
// writes them.
const Fields = "Rtd,Avg,Min,Max,Cou,ZsRtd,ZsAvg,ZsMin,ZsMax"

func knownField(f string) bool {
	switch f {
	case "Rtd", "Avg", "Min", "Max", "Cou", "ZsRtd", "ZsAvg", "ZsMin", "ZsMax":
		return true
	}
	return false
}

// ParseData parses the CP content of a data upload: DataTime=YYYYMMDDhhmmss;
// then code-Field=value items, fields of a code separated by ",", codes by
// ";". A missing or impossible DataTime fails the whole packet; a bad item
// is put in Rejects and the rest is kept.
func (c *Codec) ParseData(cp string) (Data, error) {
	var d Data
	var dataTime string
	// Few codes per packet: scans of small slices, no allocation; maps
	// only past 16 entries, so that a large joined packet stays linear.
	var flagBuf [16]flagOf
	flags := flagBuf[:0]
	var flagAt map[string]int     // code -> index in flags
	var valueAt map[[2]string]int // code, field -> index in d.Values
	n := strings.Count(cp, "=")
	d.Values = make([]Value, 0, n)
	reject := func(code, field, item string, r Reason) {
		if len(item) > 64 {
			item = item[:64]
		}
		d.Rejects = append(d.Rejects, Reject{Code: code, Field: field, Raw: item, Reason: r})
	}
	for rest := cp; rest != ""; {
		end := strings.IndexAny(rest, ";,")
		item := rest
		if end >= 0 {
			item, rest = rest[:end], rest[end+1:]
		} else {
			rest = ""
		}
		if item == "" {
			continue
		}
		key, val, ok := strings.Cut(item, "=")
		if !ok {
			reject("", "", item, ReasonUnknownField)
			continue
		}
		if key == "DataTime" {
			if dataTime != "" && dataTime != val {
				return Data{}, errorf(ReasonBadTime, "two different DataTime %q and %q", dataTime, clipString(val))
			}
			dataTime = val // a split packet may repeat it in each part
			continue
		}
		code, field, ok := strings.Cut(key, "-")
		if !ok {
			reject("", "", item, ReasonUnknownField)
			continue
		}
		if !validCode(code) {
			reject("", field, item, ReasonBadCode)
			continue
		}
		if c.KnownCode != nil && !c.KnownCode(code) {
			reject(code, field, item, ReasonUnknownCode)
			continue
		}
		if field == "Flag" {
			if len(val) != 1 || strings.IndexByte(c.dataFlags(), val[0]) < 0 {
				// Remembered as "" so that the code's values are refused:
				// what the instrument meant is unknown.
				val = ""
			}
			if i := findFlag(flags, flagAt, code); i >= 0 {
				if flags[i].flag != val {
					flags[i].flag = ""
					reject(code, field, item, ReasonFlagConflict)
				}
			} else {
				flags = append(flags, flagOf{code, val})
				if flagAt != nil {
					flagAt[code] = len(flags) - 1
				} else if len(flags) > len(flagBuf) {
					flagAt = make(map[string]int, 2*len(flags))
					for i, f := range flags {
						flagAt[f.code] = i
					}
				}
			}
			if val == "" {
				reject(code, field, item, ReasonBadDataFlag)
			}
			continue
		}
		if !knownField(field) {
			reject(code, field, item, ReasonUnknownField)
			continue
		}
		v, ok := parseDecimal(val)
		if !ok {
			reject(code, field, item, ReasonBadValue)
			continue
		}
		if findValue(d.Values, valueAt, code, field) {
			reject(code, field, item, ReasonDuplicate)
			continue
		}
		d.Values = append(d.Values, Value{Code: code, Field: field, Value: v})
		if valueAt != nil {
			valueAt[[2]string{code, field}] = len(d.Values) - 1
		} else if len(d.Values) > 16 {
			valueAt = make(map[[2]string]int, 2*len(d.Values))
			for i, v := range d.Values {
				valueAt[[2]string{v.Code, v.Field}] = i
			}
		}
	}
	if dataTime == "" {
		return Data{}, errorf(ReasonBadTime, "no DataTime in CP")
	}
	t, err := parseStamp(dataTime, c.location())
	if err != nil {
		return Data{}, err
	}
	d.Time = t
	// Attach each code's flag; a code whose flag was garbage or
	// contradictory loses its values to Rejects.
	kept := d.Values[:0]
	for _, v := range d.Values {
		bad := false
		if i := findFlag(flags, flagAt, v.Code); i >= 0 {
			v.Flag, bad = flags[i].flag, flags[i].flag == ""
		}
		if bad {
			reject(v.Code, v.Field, v.Code+"-"+v.Field, ReasonBadDataFlag)
			continue
		}
		kept = append(kept, v)
	}
	d.Values = kept
	return d, nil
}

// validCode accepts 1..32 ASCII letters and digits (w01018, a34013, ...).
func validCode(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// parseDecimal accepts plain decimal numbers only: strconv.ParseFloat would
// also take NaN, Inf, hex floats and underscores, which no analyser sends.
func parseDecimal(s string) (float64, bool) {
	if s == "" || len(s) > 64 {
		return 0, false
	}
	for i := range len(s) {
		switch c := s[i]; {
		case c >= '0' && c <= '9', c == '.', c == '-', c == '+', c == 'e', c == 'E':
		default:
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil { // syntax, or out of float64 range (1e309)
		return 0, false
	}
	return v, true
}

type flagOf struct{ code, flag string }

func findFlag(flags []flagOf, at map[string]int, code string) int {
	if at != nil {
		if i, ok := at[code]; ok {
			return i
		}
		return -1
	}
	for i := range flags {
		if flags[i].code == code {
			return i
		}
	}
	return -1
}

func findValue(values []Value, at map[[2]string]int, code, field string) bool {
	if at != nil {
		_, ok := at[[2]string{code, field}]
		return ok
	}
	for i := range values {
		if values[i].Code == code && values[i].Field == field {
			return true
		}
	}
	return false
}
