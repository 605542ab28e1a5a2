// Package spool is the agent's bounded on-disk queue of telemetry batches
// that the hub has not acknowledged yet.
//
// It is written for SD cards: one fsync of the batch file and one of the
// directory per Append (never per point), nothing synced on Ack, and no
// rewriting of stored data. It survives restarts and power loss, detects torn
// or corrupted records with a CRC-32C, and keeps at most Options.MaxBytes of
// unacknowledged batches by dropping the oldest.
//
// # On-disk format
//
// A spool directory holds:
//
//	LOCK                      flock(2)ed while a Spool is open; holds the owner's pid (informational)
//	STATE                     durable counters, written only on rare events (see below)
//	<seq>.batch               one unacknowledged batch
//	<seq>.done                the newest batch after it was acknowledged (kept as a carrier, see below)
//	*.tmp                     a batch or STATE being written; removed by Open (never reported as stored)
//
// <seq> is the batch's sequence number as 20 decimal digits, zero padded, so
// that name order is seq order. A file appears under its final name only by
// rename(2) after its content was fsynced, so a name always carries a seq that
// was really assigned, even when the content later rots.
//
// A batch file is a 40-byte header followed by the encoded protocol message
// (protocol.Encode of the Batch, exactly the bytes sent to the hub). All
// integers are little endian:
//
//	off len field
//	  0   4 magic "FWSB"
//	  4   4 format version, 1
//	  8   8 seq (must equal the seq in the file name)
//	 16   8 dropped: cumulative batches lost by the spool when this was written
//	 24   8 floor: every seq <= floor had been acknowledged or dropped when this was written
//	 32   4 n: length of the message
//	 36   4 CRC-32C (Castagnoli) of bytes 0..35 followed by the message
//	 40   n the message
//
// A file whose size is not 40+n, whose magic, version, seq or CRC do not
// match is corrupt: Open logs it, counts it (Stats.Corrupt, and in
// Stats.Dropped because the batch is lost), and deletes it; the other batches
// are unaffected.
//
// STATE is 36 bytes: magic "FWSS", version u32 = 1, last seq u64, dropped u64,
// floor u64, CRC-32C of bytes 0..31. It is replaced atomically (write
// STATE.tmp, fsync, rename, fsync the directory).
//
// # Why the counters never go backwards
//
// The last assigned seq, the dropped counter and the floor only grow. On Open
// each is the maximum over STATE, every file name (seq; a .done name also
// proves its seq was acknowledged) and every intact header. The newest file
// is never deleted until a newer one is durable, so in the common case its
// name and header carry all three and STATE is not needed; when Ack covers
// the newest batch its file is renamed to .done instead of being removed.
// Whenever the spool must delete a file whose loss the counters must record
// (a corrupt batch, batches dropped by Open to fit a smaller MaxBytes) it
// first writes STATE durably. Append records the batches it drops in the new
// batch's header, which is durable before the old files are unlinked, so a
// power cut between the two does not count them twice.
//
// Acks and unlinks are not synced: after a power cut some acknowledged
// batches may come back and be sent again, which the hub tolerates
// (at-least-once delivery; InfluxDB stores a point once).
//
// # Limits
//
// Stats.Bytes and MaxBytes count whole files (RecordOverhead + message) of
// unacknowledged batches. On disk the directory can additionally hold the
// .done carrier (at most one batch) and the small LOCK and STATE files.
package spool
