package hj212

// CRC returns the HJ 212 checksum of a data segment: start 0xFFFF; for each
// byte, crc = (crc >> 8) ^ byte, then eight times shift right by one and XOR
// 0xA001 when the bit shifted out was 1. It differs from CRC-16/MODBUS,
// which XORs the byte into the low half without first dropping the low byte.
//
// As (crc >> 8) ^ byte is below 256, the eight shifts are a look-up in a
// table of 256 entries built once.
func CRC(seg []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, b := range seg {
		crc = crcTable[byte(crc>>8)^b]
	}
	return crc
}

// crcTable[x] is x shifted eight times as above. Read-only.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i)
		for range 8 {
			lsb := crc & 1
			crc >>= 1
			if lsb != 0 {
				crc ^= 0xA001
			}
		}
		t[i] = crc
	}
	return t
}()

const hexUpper = "0123456789ABCDEF"

// appendCRC appends crc as four upper-case hex digits.
func appendCRC(dst []byte, crc uint16) []byte {
	return append(dst, hexUpper[crc>>12], hexUpper[crc>>8&0xF], hexUpper[crc>>4&0xF], hexUpper[crc&0xF])
}

// parseHex4 reads four hex digits (either case); ok is false otherwise.
func parseHex4(b []byte) (v uint16, ok bool) {
	if len(b) != 4 {
		return 0, false
	}
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint16(d)
	}
	return v, true
}
