package wire

import (
	"encoding/binary"
	"fmt"
)

// maxDepth is how deeply msgpack maps and arrays may nest in a body (the body
// itself is level 1). The messages of this version nest two deep
// (execute.limits); the rest is room for fields added later.
const maxDepth = 32

// checkBody reports why b is not exactly one well-formed msgpack map (nil if
// it is). It never allocates in proportion to a declared length: it walks the
// bytes once, keeping only a stack of remaining element counts, and rejects a
// container or string that claims more than the bytes left could hold (every
// element takes at least one byte). It does not look at what the values mean.
func checkBody(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("empty body")
	}
	if c := b[0]; c&0xf0 != 0x80 && c != 0xde && c != 0xdf {
		return fmt.Errorf("body is not a map (first byte 0x%02x)", c)
	}
	var stack [maxDepth + 1]uint64 // values still expected at each open level
	depth := 1
	stack[0] = 1
	pos := 0
	for depth > 0 {
		if stack[depth-1] == 0 {
			depth--
			continue
		}
		stack[depth-1]--
		if pos >= len(b) {
			return fmt.Errorf("truncated at byte %d", pos)
		}
		at, c := pos, b[pos]
		pos++
		var (
			size     int    // bytes of a length field that follows c
			elems    uint64 // values a container holds
			isCont   bool
			payload  uint64 // bytes of data that follow the length field
			hasBytes bool   // payload is given by the length field
		)
		switch {
		case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3: // fixint, nil, bool
		case c&0xf0 == 0x80: // fixmap
			isCont, elems = true, 2*uint64(c&0x0f)
		case c&0xf0 == 0x90: // fixarray
			isCont, elems = true, uint64(c&0x0f)
		case c&0xe0 == 0xa0: // fixstr
			payload = uint64(c & 0x1f)
		case c == 0xc4 || c == 0xd9: // bin8, str8
			size, hasBytes = 1, true
		case c == 0xc5 || c == 0xda: // bin16, str16
			size, hasBytes = 2, true
		case c == 0xc6 || c == 0xdb: // bin32, str32
			size, hasBytes = 4, true
		case c == 0xc7: // ext8: length, type, data
			size, hasBytes, payload = 1, true, 1
		case c == 0xc8: // ext16
			size, hasBytes, payload = 2, true, 1
		case c == 0xc9: // ext32
			size, hasBytes, payload = 4, true, 1
		case c == 0xcc || c == 0xd0: // uint8, int8
			payload = 1
		case c == 0xcd || c == 0xd1: // uint16, int16
			payload = 2
		case c == 0xca || c == 0xce || c == 0xd2: // float32, uint32, int32
			payload = 4
		case c == 0xcb || c == 0xcf || c == 0xd3: // float64, uint64, int64
			payload = 8
		case c >= 0xd4 && c <= 0xd8: // fixext 1, 2, 4, 8, 16: type, data
			payload = 1 + 1<<(c-0xd4)
		case c == 0xdc: // array16
			size, isCont = 2, true
		case c == 0xdd: // array32
			size, isCont = 4, true
		case c == 0xde: // map16
			size, isCont = 2, true
		case c == 0xdf: // map32
			size, isCont = 4, true
		default: // 0xc1 is never used
			return fmt.Errorf("invalid code 0x%02x at byte %d", c, at)
		}
		if size > 0 {
			if len(b)-pos < size {
				return fmt.Errorf("truncated at byte %d", pos)
			}
			var n uint64
			switch size {
			case 1:
				n = uint64(b[pos])
			case 2:
				n = uint64(binary.BigEndian.Uint16(b[pos:]))
			case 4:
				n = uint64(binary.BigEndian.Uint32(b[pos:]))
			}
			pos += size
			switch {
			case hasBytes:
				payload += n
			case c == 0xde || c == 0xdf:
				elems = 2 * n
			default:
				elems = n
			}
		}
		left := uint64(len(b) - pos)
		if payload > left {
			return fmt.Errorf("value at byte %d declares %d bytes, %d left", at, payload, left)
		}
		pos += int(payload)
		if isCont && elems > 0 {
			if elems > left {
				return fmt.Errorf("value at byte %d declares %d elements, %d bytes left", at, elems, left)
			}
			if depth > maxDepth {
				return fmt.Errorf("value at byte %d nests deeper than %d", at, maxDepth)
			}
			stack[depth] = elems
			depth++
		}
	}
	if pos != len(b) {
		return fmt.Errorf("%d trailing bytes after the body", len(b)-pos)
	}
	return nil
}
