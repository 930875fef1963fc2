package usage

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
	"unsafe"
)

// Media headers are read straight out of base64 payloads: only the few
// 4-character groups that cover the header bytes are decoded, so an image
// costs the same to inspect whatever its size, and its size never turns
// into tokens.

// maxHeaderScan bounds how far into a payload a header is looked for
// (JPEG frames can sit behind large EXIF segments).
const maxHeaderScan = 1 << 20

// b64 gives random access to the bytes encoded by a base64 string.
type b64 struct {
	s   string
	enc *base64.Encoding
	n   int // decoded length
}

// newB64 accepts standard or URL-safe base64, padded or not, without
// whitespace (as data URLs and JSON payloads carry it).
func newB64(s string) (b64, bool) {
	s = strings.TrimRight(s, "=")
	if s == "" || strings.ContainsAny(s, " \r\n\t") {
		return b64{}, false
	}
	enc := base64.RawStdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	return b64{s: s, enc: enc, n: len(s) * 6 / 8}, true
}

// at decodes n bytes from offset off; ok is false past the end or on
// invalid characters.
func (b b64) at(off, n int, dst []byte) ([]byte, bool) {
	if off < 0 || n < 0 || off+n > b.n || n > len(dst) {
		return nil, false
	}
	first := off / 3 * 4
	last := min((off+n+2)/3*4, len(b.s))
	var buf [64]byte
	if (last-first)*3/4 > len(buf) {
		return nil, false
	}
	m, err := b.enc.Decode(buf[:], unsafeBytes(b.s[first:last]))
	if err != nil {
		return nil, false
	}
	skip := off - first/4*3
	if skip+n > m {
		return nil, false
	}
	return dst[:copy(dst, buf[skip:skip+n])], true
}

// dataURL splits "data:<mime>;base64,<payload>".
func dataURL(u string) (mime, payload string, ok bool) {
	rest, found := strings.CutPrefix(u, "data:")
	if !found {
		return "", "", false
	}
	meta, payload, found := strings.Cut(rest, ",")
	if !found || !strings.HasSuffix(meta, ";base64") {
		return "", "", false
	}
	mime, _, _ = strings.Cut(meta, ";")
	return mime, payload, true
}

// imageSize reads the pixel size of a PNG, JPEG, GIF or WebP image from
// its header bytes.
func imageSize(b b64) (w, h int, ok bool) {
	var buf [32]byte
	head, ok := b.at(0, min(30, b.n), buf[:])
	if !ok || len(head) < 10 {
		return 0, 0, false
	}
	switch {
	case len(head) >= 24 && string(head[:8]) == "\x89PNG\r\n\x1a\n" && string(head[12:16]) == "IHDR":
		return int(binary.BigEndian.Uint32(head[16:20])), int(binary.BigEndian.Uint32(head[20:24])), true
	case string(head[:4]) == "GIF8":
		return int(binary.LittleEndian.Uint16(head[6:8])), int(binary.LittleEndian.Uint16(head[8:10])), true
	case len(head) >= 30 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return webpSize(head)
	case head[0] == 0xFF && head[1] == 0xD8:
		return jpegSize(b)
	}
	return 0, 0, false
}

// webpSize handles the lossy, lossless and extended WebP headers.
func webpSize(h []byte) (int, int, bool) {
	switch string(h[12:16]) {
	case "VP8 ":
		if h[23] != 0x9d || h[24] != 0x01 || h[25] != 0x2a {
			return 0, 0, false
		}
		return int(binary.LittleEndian.Uint16(h[26:28]) & 0x3fff), int(binary.LittleEndian.Uint16(h[28:30]) & 0x3fff), true
	case "VP8L":
		if h[20] != 0x2f {
			return 0, 0, false
		}
		v := binary.LittleEndian.Uint32(h[21:25])
		return int(v&0x3fff) + 1, int(v>>14&0x3fff) + 1, true
	case "VP8X":
		w := int(h[24]) | int(h[25])<<8 | int(h[26])<<16
		hh := int(h[27]) | int(h[28])<<8 | int(h[29])<<16
		return w + 1, hh + 1, true
	}
	return 0, 0, false
}

// jpegSize walks the JPEG marker segments to the first start-of-frame.
func jpegSize(b b64) (int, int, bool) {
	var buf [16]byte
	off := 2
	for off+4 <= min(b.n, maxHeaderScan) {
		m, ok := b.at(off, 4, buf[:])
		if !ok || m[0] != 0xFF {
			return 0, 0, false
		}
		marker := m[1]
		switch {
		case marker == 0xFF: // fill byte
			off++
			continue
		case marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7): // standalone
			off += 2
			continue
		case marker == 0xD9 || marker == 0xDA: // end of image / start of scan
			return 0, 0, false
		}
		segLen := int(binary.BigEndian.Uint16(m[2:4]))
		if segLen < 2 {
			return 0, 0, false
		}
		if marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC {
			f, ok := b.at(off+5, 4, buf[:])
			if !ok {
				return 0, 0, false
			}
			return int(binary.BigEndian.Uint16(f[2:4])), int(binary.BigEndian.Uint16(f[0:2])), true
		}
		off += 2 + segLen
	}
	return 0, 0, false
}

// audioSeconds reads the duration of a WAV (from its byte rate and data
// size) or a constant-bit-rate MP3 (from its first frame's bit rate).
func audioSeconds(b b64, format string) (float64, bool) {
	switch strings.ToLower(format) {
	case "wav", "wave", "audio/wav", "audio/x-wav", "audio/wave":
		return wavSeconds(b)
	case "mp3", "mpeg", "audio/mpeg", "audio/mp3":
		return mp3Seconds(b)
	}
	return 0, false
}

func wavSeconds(b b64) (float64, bool) {
	var buf [16]byte
	h, ok := b.at(0, 12, buf[:])
	if !ok || string(h[:4]) != "RIFF" || string(h[8:12]) != "WAVE" {
		return 0, false
	}
	byteRate := 0
	for off := 12; off+8 <= min(b.n, maxHeaderScan); {
		c, ok := b.at(off, 8, buf[:])
		if !ok {
			return 0, false
		}
		id := string(c[:4])
		size := int(binary.LittleEndian.Uint32(c[4:8]))
		switch id {
		case "fmt ":
			f, ok := b.at(off+8, 12, buf[:])
			if !ok {
				return 0, false
			}
			byteRate = int(binary.LittleEndian.Uint32(f[8:12]))
		case "data":
			if byteRate <= 0 {
				return 0, false
			}
			// Streamed WAVs leave the size unset: the payload end bounds it.
			avail := b.n - off - 8
			if size <= 0 || size > avail {
				size = avail
			}
			return float64(size) / float64(byteRate), true
		}
		off += 8 + size + size&1
	}
	return 0, false
}

func mp3Seconds(b b64) (float64, bool) {
	// bit rates in kbit/s for MPEG-1 and MPEG-2/2.5 layer III
	mp3RatesV1 := [16]int{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0}
	mp3RatesV2 := [16]int{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0}
	var buf [16]byte
	off := 0
	if h, ok := b.at(0, 10, buf[:]); ok && string(h[:3]) == "ID3" {
		// ID3v2 tag: synch-safe size, then the first frame.
		size := int(h[6]&0x7f)<<21 | int(h[7]&0x7f)<<14 | int(h[8]&0x7f)<<7 | int(h[9]&0x7f)
		off = 10 + size
	}
	for end := min(b.n, off+4096); off+4 <= end; off++ {
		f, ok := b.at(off, 4, buf[:])
		if !ok {
			return 0, false
		}
		if f[0] != 0xFF || f[1]&0xE0 != 0xE0 {
			continue
		}
		version := f[1] >> 3 & 3 // 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5
		layer := f[1] >> 1 & 3   // 1 = layer III
		idx := f[2] >> 4
		if version == 1 || layer != 1 || idx == 0 || idx == 15 {
			continue
		}
		rate := mp3RatesV2[idx]
		if version == 3 {
			rate = mp3RatesV1[idx]
		}
		return float64(b.n-off) * 8 / float64(rate*1000), true
	}
	return 0, false
}

// unsafeBytes views a string as bytes without copying; callers only read.
func unsafeBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
