// Package hj212 speaks HJ 212-2017, the protocol of the data loggers of
// wastewater and stack analysers in China: a codec for its frames and a TCP
// server that loggers connect to. It knows nothing else of cleanprod: the
// caller looks up MN and PW, stores the readings and dead-letters rejects
// through the Server's hooks.
//
// # What flows in and out
//
// A logger opens a TCP connection and sends frames
//
//	##0252QN=20240601120000123;ST=32;CN=2051;PW=123456;MN=ENT0001WW01;Flag=5;CP=&&DataTime=20240601115900;w01018-Avg=23.4,...,w01018-Flag=N;...&&B2C1\r\n
//
// "##", the data segment's length in 4 decimal digits, the segment, its CRC
// in 4 hex digits, "\r\n". The Server reads them with a Framer, checks
// length and CRC, parses the segment into a Packet (ParseSegment), joins
// split packets (Joiner), parses the CP of data uploads (2011 real-time,
// 2051 minute, 2061 hourly, 2031 daily) into Data, and hands each packet
// to Server.Handler as a Request. The caller settles it later, from any
// goroutine: Confirm once the readings are stored (the Server then writes
// the 9014 acknowledgement if the packet's Flag asked for one), Refuse with
// a QnRtn (a 9011 reply, e.g. 3 bad PW, 4 bad MN) or Drop (no reply). No
// 9014 is written before Confirm.
//
// Everything rejected goes to Server.OnError as an *Error with a Reason
// (a metric label), a detail and the raw bytes (at most RawLimit); when the
// QN could be read, even from a frame whose CRC failed, the Server answers
// with a 9011 carrying Error.QnRtn (9 for a bad CRC, 3..8 for bad PW, MN,
// ST, Flag, QN, CN, 100 otherwise) and keeps the connection, until
// MaxBadFrames rejects in a row. A bad value inside a data packet rejects
// only that value (Data.Rejects); the others are kept.
//
// # Bounds
//
// Per connection: one frame buffer of MaxSegment+12 bytes whatever the peer
// declares or sends, at most SplitPackets incomplete split packets of at
// most MaxParts frames, and at most MaxPending requests unsettled or
// replies unwritten; at that bound the connection stops reading, so a slow
// store pushes back through TCP to the logger instead of filling memory.
// MaxConns bounds the connections. A connection is closed when silent for
// IdleTimeout, when a frame takes longer than FrameTimeout from its first
// byte (a sender trickling bytes), after MaxBadFrames rejects in a row, or
// when a reply cannot be written within WriteTimeout. TCP keepalive finds
// dead peers. Counters are in Server.Stats; no metrics library is used.
//
// # Facts relied on
//
// From HJ 212-2017 and its widely reproduced examples: the frame layout; the
// segment fields QN (YYYYMMDDhhmmsszzz), ST, CN, PW, MN, Flag (bits V5..V0
// D A: version, 1 = 2017; D packet numbering present; A acknowledgement
// wanted), PNUM/PNO, CP=&&...&&; the CRC (start 0xFFFF, per byte crc =
// (crc>>8) ^ byte then 8 right shifts with 0xA001; not CRC-16/MODBUS),
// checked against the standard's example (1C80) and a minute frame (B2C1);
// the data field suffixes Rtd, Avg, Min, Max, Cou, ZsRtd, ZsAvg, ZsMin,
// ZsMax, Flag; the data flags N F M S D C T B; the QnRtn codes; 9014 with
// ST=91, Flag=4, CP=&&&&.
//
// Unverified, hence settings or documented assumptions:
//   - The 1024-byte cap of a data segment: Codec.MaxSegment (the length
//     field counts bytes).
//   - Station time is China time, UTC+8 without daylight saving:
//     Codec.Location.
//   - The data flag table: Codec.DataFlags; which flags count as valid
//     data is the caller's policy (ValidDataFlags gives the usual N and S).
//   - Pollutant codes (w01018, a21026, w00000, ...): the codec only checks
//     their syntax; Codec.KnownCode lets the caller refuse unknown ones.
//   - The 9011 reply puts QN in the header and QnRtn=n in CP, with Flag=4,
//     as an independent implementation's copy of the 2017 example does;
//     HJ/T 212-2005 put QN=...;QnRtn=n in CP instead.
//   - Split packets are cut at item boundaries, so parts' CP are joined
//     with ";"; a joined packet is acknowledged once.
//   - HJ 212-2025 (in force from 2026-01-01) has no public summary of its
//     changes; the version is read from each packet's Flag
//     (Flag.Version), so a second codec version can be chosen per packet.
//
// Choices of this package: QN, ST, CN, PW, MN and Flag are required; header
// fields may come in any order but unknown or repeated ones are rejected;
// the D bit and PNUM/PNO must agree; a code whose flag is not in the table,
// or which carries two different flags, has all its values rejected (what
// the instrument meant is unknown); a value must be a finite plain decimal
// number. Bytes outside frames are skipped to the next "##" and reported
// as ReasonGarbage.
package hj212
