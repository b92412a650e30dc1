//! The two protobuf messages of a tensor bundle's index (`BundleHeaderProto`, `BundleEntryProto`,
//! from TensorFlow's `tensor_bundle.proto`), decoded by hand: varints, fixed-width fields and
//! length-delimited fields are all the wire format these messages use, and a hand decoder keeps the
//! crate free of code generation. Unknown fields are skipped, as protobuf requires.

use crate::DecodeError;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over one encoded message.
pub(crate) struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Wire { buf, pos: 0 }
    }

    pub(crate) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(DecodeError::Truncated("varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("varint longer than 10 bytes".into()))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(DecodeError::Truncated("length-delimited field"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn fixed32(&mut self) -> Result<u32, DecodeError> {
        let b = self
            .bytes(4)
            .map_err(|_| DecodeError::Truncated("fixed32 field"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next field's number and wire type.
    fn tag(&mut self) -> Result<(u64, u8), DecodeError> {
        let t = self.varint()?;
        Ok((t >> 3, (t & 7) as u8))
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::Truncated("length-delimited field"))?;
        self.bytes(n)
    }

    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.bytes(8).map(drop),
            LEN => self.len_delimited().map(drop),
            FIXED32 => self.bytes(4).map(drop),
            other => Err(DecodeError::Malformed(format!(
                "unsupported wire type {other}"
            ))),
        }
    }

    fn expect(&self, field: &'static str, wire: u8, want: u8) -> Result<(), DecodeError> {
        if wire == want {
            Ok(())
        } else {
            Err(DecodeError::Malformed(format!(
                "field {field} has wire type {wire}, expected {want}"
            )))
        }
    }
}

/// `BundleHeaderProto`: the value stored under the empty key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BundleHeader {
    /// Number of `.data-NNNNN-of-MMMMM` shards.
    pub num_shards: u32,
    /// `false` for little-endian data (`LITTLE = 0`), the only kind this reader accepts.
    pub big_endian: bool,
    /// `VersionDef.producer` of the writer.
    pub producer: i32,
}

impl BundleHeader {
    pub(crate) fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut w = Wire::new(buf);
        let mut h = BundleHeader::default();
        while !w.done() {
            match w.tag()? {
                (1, wire) => {
                    w.expect("num_shards", wire, VARINT)?;
                    let n = w.varint()? as i64 as i32;
                    h.num_shards = u32::try_from(n)
                        .map_err(|_| DecodeError::Malformed(format!("negative num_shards {n}")))?;
                }
                (2, wire) => {
                    w.expect("endianness", wire, VARINT)?;
                    h.big_endian = w.varint()? != 0;
                }
                (3, wire) => {
                    w.expect("version", wire, LEN)?;
                    let mut v = Wire::new(w.len_delimited()?);
                    while !v.done() {
                        match v.tag()? {
                            (1, VARINT) => h.producer = v.varint()? as i32,
                            (_, wire) => v.skip(wire)?,
                        }
                    }
                }
                (_, wire) => w.skip(wire)?,
            }
        }
        Ok(h)
    }
}

/// `BundleEntryProto`: where one tensor lives and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BundleEntry {
    /// TensorFlow `DataType` code (1 = float, 9 = int64, …).
    pub dtype: i32,
    /// Dimensions; empty for a scalar.
    pub shape: Vec<i64>,
    /// `true` when the shape was stored with `unknown_rank`.
    pub unknown_rank: bool,
    /// Which data shard holds the bytes.
    pub shard_id: i32,
    /// Byte offset in the shard.
    pub offset: i64,
    /// Byte length in the shard.
    pub size: i64,
    /// Masked CRC-32C of the bytes.
    pub crc32c: u32,
    /// Number of `TensorSliceProto`s: non-zero for a tensor saved as partitioned slices.
    pub num_slices: usize,
}

impl BundleEntry {
    pub(crate) fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut w = Wire::new(buf);
        let mut e = BundleEntry::default();
        while !w.done() {
            match w.tag()? {
                (1, wire) => {
                    w.expect("dtype", wire, VARINT)?;
                    e.dtype = w.varint()? as i32;
                }
                (2, wire) => {
                    w.expect("shape", wire, LEN)?;
                    decode_shape(w.len_delimited()?, &mut e)?;
                }
                (3, wire) => {
                    w.expect("shard_id", wire, VARINT)?;
                    e.shard_id = w.varint()? as i32;
                }
                (4, wire) => {
                    w.expect("offset", wire, VARINT)?;
                    e.offset = w.varint()? as i64;
                }
                (5, wire) => {
                    w.expect("size", wire, VARINT)?;
                    e.size = w.varint()? as i64;
                }
                (6, wire) => {
                    w.expect("crc32c", wire, FIXED32)?;
                    e.crc32c = w.fixed32()?;
                }
                (7, wire) => {
                    w.expect("slices", wire, LEN)?;
                    w.len_delimited()?;
                    e.num_slices += 1;
                }
                (_, wire) => w.skip(wire)?,
            }
        }
        Ok(e)
    }
}

/// `TensorShapeProto { repeated Dim dim = 2; bool unknown_rank = 3; }`, `Dim { int64 size = 1; }`.
fn decode_shape(buf: &[u8], e: &mut BundleEntry) -> Result<(), DecodeError> {
    let mut w = Wire::new(buf);
    while !w.done() {
        match w.tag()? {
            (2, wire) => {
                w.expect("shape.dim", wire, LEN)?;
                let mut d = Wire::new(w.len_delimited()?);
                let mut size = 0i64;
                while !d.done() {
                    match d.tag()? {
                        (1, VARINT) => size = d.varint()? as i64,
                        (_, wire) => d.skip(wire)?,
                    }
                }
                e.shape.push(size);
            }
            (3, wire) => {
                w.expect("shape.unknown_rank", wire, VARINT)?;
                e.unknown_rank = w.varint()? != 0;
            }
            (_, wire) => w.skip(wire)?,
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Protobuf encoders for tests (and for the crate's table tests).
    pub(crate) fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn field(num: u64, wire: u8, out: &mut Vec<u8>) {
        varint(num << 3 | u64::from(wire), out);
    }

    pub(crate) fn encode_entry(e: &BundleEntry) -> Vec<u8> {
        let mut out = Vec::new();
        field(1, VARINT, &mut out);
        varint(e.dtype as u64, &mut out);
        let mut shape = Vec::new();
        for &d in &e.shape {
            let mut dim = Vec::new();
            field(1, VARINT, &mut dim);
            varint(d as u64, &mut dim);
            field(2, LEN, &mut shape);
            varint(dim.len() as u64, &mut shape);
            shape.extend(dim);
        }
        field(2, LEN, &mut out);
        varint(shape.len() as u64, &mut out);
        out.extend(shape);
        field(3, VARINT, &mut out);
        varint(e.shard_id as u64, &mut out);
        field(4, VARINT, &mut out);
        varint(e.offset as u64, &mut out);
        field(5, VARINT, &mut out);
        varint(e.size as u64, &mut out);
        field(6, FIXED32, &mut out);
        out.extend(e.crc32c.to_le_bytes());
        for _ in 0..e.num_slices {
            field(7, LEN, &mut out);
            varint(0, &mut out);
        }
        out
    }

    pub(crate) fn encode_header(num_shards: u32) -> Vec<u8> {
        let mut out = Vec::new();
        field(1, VARINT, &mut out);
        varint(u64::from(num_shards), &mut out);
        // VersionDef { producer: 1 }
        field(3, LEN, &mut out);
        out.extend([2, 8, 1]);
        out
    }

    #[test]
    fn entry_round_trips_and_skips_unknown_fields() {
        let e = BundleEntry {
            dtype: 1,
            shape: vec![3, 3, 64, 128],
            unknown_rank: false,
            shard_id: 0,
            offset: 1 << 33,
            size: 294_912,
            crc32c: 0xdead_beef,
            num_slices: 0,
        };
        let mut buf = encode_entry(&e);
        // An unknown field 15 (varint) and 16 (fixed64) must be skipped.
        buf.extend([15 << 3, 42, 16 << 3 | 1 | 0x80, 1]);
        buf.extend([7u8; 8]);
        assert_eq!(BundleEntry::decode(&buf).expect("decodes"), e);
    }

    #[test]
    fn header_decodes() {
        let h = BundleHeader::decode(&encode_header(3)).expect("decodes");
        assert_eq!(
            h,
            BundleHeader {
                num_shards: 3,
                big_endian: false,
                producer: 1
            }
        );
    }

    #[test]
    fn truncated_and_malformed_messages_are_errors() {
        let buf = encode_entry(&BundleEntry {
            dtype: 1,
            shape: vec![4],
            ..Default::default()
        });
        for cut in 1..buf.len() {
            // Every strict prefix either fails or decodes to something else; none panics.
            if let Ok(e) = BundleEntry::decode(&buf[..cut]) {
                assert!(e.size == 0 || e.shape.is_empty() || e.crc32c == 0);
            }
        }
        assert!(matches!(
            BundleEntry::decode(&[0x08]),
            Err(DecodeError::Truncated(_))
        ));
        // dtype with a length-delimited wire type.
        assert!(matches!(
            BundleEntry::decode(&[0x0a, 0]),
            Err(DecodeError::Malformed(_))
        ));
        // wire type 3 (deprecated groups)
        assert!(matches!(
            BundleEntry::decode(&[0x7b]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            BundleEntry::decode(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1
            ]),
            Err(DecodeError::Malformed(_))
        ));
    }
}
