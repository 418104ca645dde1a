package registry

import (
	"fmt"
	"strings"
)

// usccChars are the 31 characters of GB 32100-2015 (digits and capitals
// without I, O, S, V and Z); a character's value is its index.
const usccChars = "0123456789ABCDEFGHJKLMNPQRTUWXY"

// usccWeights are the weights of characters 1-17: 3^(i-1) mod 31.
var usccWeights = [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}

// CheckUSCC reports whether code is a well-formed unified social credit
// code (统一社会信用代码, GB 32100-2015): 18 characters from the standard's
// 31 (digits and capitals without I, O, S, V, Z), characters 3-8 the
// registering authority's region code (digits), and character 18 the
// check character: 31 - (Σ value_i x 3^(i-1) mod 31) mod 31, over the
// first 17. It does not tell whether the code was ever issued.
func CheckUSCC(code string) error {
	if n := len(code); n != 18 {
		return fmt.Errorf("unified social credit code %q: want 18 characters, got %d", code, n)
	}
	sum := 0
	for i := range 18 {
		c := code[i]
		v := strings.IndexByte(usccChars, c)
		if v < 0 {
			hint := ""
			if c >= 'a' && c <= 'z' {
				hint = "; letters are upper case"
			}
			return fmt.Errorf("unified social credit code %q: character %d %q is not one of 0-9 and A-Y without I, O, S, V, Z (GB 32100-2015)%s", code, i+1, c, hint)
		}
		if i >= 2 && i < 8 && v > 9 {
			return fmt.Errorf("unified social credit code %q: characters 3-8 are the region code and must be digits, got %q", code, code[2:8])
		}
		if i < 17 {
			sum += v * usccWeights[i]
		}
	}
	if want := usccChars[(31-sum%31)%31]; code[17] != want {
		return fmt.Errorf("unified social credit code %q: check character is %q, want %q (GB 32100-2015): a character is mistyped", code, code[17], want)
	}
	return nil
}

// CheckDischargePermit reports whether permit is a well-formed discharge
// permit number (排污许可证编号, HJ 608-2017): the holder's 18-character
// code, a 3-digit sequence number of its sources and one check or kind
// character (e.g. 91130200699229617X001P). The code is the holder's unified
// social credit code, which must be uscc when that is given, or, for a
// holder without one, "H9" and a substitute code. The last character is
// not verified: HJ 608 does not define it for every kind of permit.
func CheckDischargePermit(permit, uscc string) error {
	if n := len(permit); n != 22 {
		return fmt.Errorf("discharge permit number %q: want 22 characters (18-character holder code, 3-digit sequence, 1 letter), got %d", permit, n)
	}
	code, seq, last := permit[:18], permit[18:21], permit[21]
	switch {
	case strings.HasPrefix(code, "H9"):
		if !allDigits(code[2:8]) {
			return fmt.Errorf("discharge permit number %q: a substitute code H9... carries the issuing authority's 6-digit region code next", permit)
		}
		if uscc != "" {
			return fmt.Errorf("discharge permit number %q has a substitute holder code, but the enterprise has unified social credit code %s", permit, uscc)
		}
	default:
		if err := CheckUSCC(code); err != nil {
			return fmt.Errorf("discharge permit number %q: its first 18 characters: %w", permit, err)
		}
		if uscc != "" && code != uscc {
			return fmt.Errorf("discharge permit number %q does not start with the enterprise's unified social credit code %s (HJ 608-2017)", permit, uscc)
		}
	}
	if !allDigits(seq) {
		return fmt.Errorf("discharge permit number %q: characters 19-21 are a sequence number and must be digits, got %q", permit, seq)
	}
	if !(last >= 'A' && last <= 'Z' || last >= '0' && last <= '9') {
		return fmt.Errorf("discharge permit number %q: the last character must be a capital letter or a digit, got %q", permit, last)
	}
	return nil
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
