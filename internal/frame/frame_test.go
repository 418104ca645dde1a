package frame

import (
	"errors"
	"testing"
)

// TestNext: records read back whole; a record cut short, one over the
// limit and one damaged are told apart.
func TestNext(t *testing.T) {
	data := Append(Append(nil, []byte("one")), []byte("second"))
	block, rest, whole, err := Next(data, 0)
	if !whole || err != nil || string(block) != "one" {
		t.Fatalf("first: %q %t %v", block, whole, err)
	}
	if block, rest, whole, err = Next(rest, 0); !whole || err != nil || string(block) != "second" || len(rest) != 0 {
		t.Fatalf("second: %q %t %v, %d left", block, whole, err, len(rest))
	}
	one := Append(nil, []byte("second"))
	for n := range len(one) {
		if _, _, whole, _ := Next(one[:n], 0); whole {
			t.Errorf("the first %d bytes of a record read as a whole record", n)
		}
	}
	if _, _, whole, _ := Next(data, 2); whole {
		t.Error("a record over the limit read as whole")
	}
	bad := append([]byte(nil), data...)
	bad[Overhead] ^= 1
	if _, rest, whole, err := Next(bad, 0); !whole || !errors.Is(err, ErrChecksum) || len(rest) != len(data)-Overhead-3 {
		t.Errorf("damaged: whole %t err %v rest %d", whole, err, len(rest))
	}
}
