// Package frame delimits records in files that are appended to or read
// back after a crash: each record is its length and CRC-32C (Castagnoli)
// followed by its bytes, so that a reader tells a record cut short (the
// file ends inside it) from a damaged one (its checksum does not match).
// The scorer's checkpoint and journal and the event outbox use it.
package frame

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Overhead is the bytes a frame adds to its record.
const Overhead = 8

// ErrChecksum is returned by Next for a record whose checksum does not
// match.
var ErrChecksum = errors.New("checksum mismatch")

var table = crc32.MakeTable(crc32.Castagnoli)

// Append appends block, framed, to buf.
func Append(buf, block []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(block)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(block, table))
	return append(buf, block...)
}

// Next splits the first framed record off data. whole is false when data
// ends inside it, or when its length is over limit (limit 0: no limit),
// which is damage that reads as a record cut short; err is ErrChecksum
// (with block and rest set) when its checksum does not match.
func Next(data []byte, limit int) (block, rest []byte, whole bool, err error) {
	if len(data) < Overhead {
		return nil, data, false, nil
	}
	n := int(binary.LittleEndian.Uint32(data))
	sum := binary.LittleEndian.Uint32(data[4:])
	if (limit > 0 && n > limit) || n > len(data)-Overhead {
		return nil, data, false, nil
	}
	block = data[Overhead : Overhead+n]
	if crc32.Checksum(block, table) != sum {
		return block, data[Overhead+n:], true, ErrChecksum
	}
	return block, data[Overhead+n:], true, nil
}
