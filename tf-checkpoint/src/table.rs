//! The `.index` file: a LevelDB-format table (TensorFlow's `lib/io/table`), read whole.
//!
//! Layout: data blocks, a meta-index block, an index block, and a 48-byte footer holding the
//! handles (varint offset + size) of the meta-index and index blocks, zero padding, and the magic
//! `0xdb4775248b80fb57`. Every block is followed by a 5-byte trailer: a compression byte (0 = none)
//! and the masked CRC-32C of the block and that byte. A block is a run of prefix-compressed entries
//! (`shared`, `non_shared`, `value_len` varints, the key's new suffix, the value) followed by the
//! restart-point offsets (u32 each) and their count (u32). The index block maps a separator key per
//! data block to that block's handle.

use std::path::{Path, PathBuf};

use crate::crc32c;
use crate::error::{Error, Result};

const FOOTER_LEN: usize = 48;
const TRAILER_LEN: usize = 5;
pub(crate) const MAGIC: u64 = 0xdb47_7524_8b80_fb57;

/// A block's position in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Handle {
    offset: u64,
    size: u64,
}

/// Reads every key/value pair of the table in `bytes` (the whole index file), in key order.
pub(crate) fn read_all(path: &Path, bytes: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let t = Table {
        path: path.to_path_buf(),
        bytes,
    };
    let len = bytes.len() as u64;
    if bytes.len() < FOOTER_LEN {
        return Err(Error::Truncated {
            path: t.path,
            what: "the table footer".into(),
            start: len.saturating_sub(FOOTER_LEN as u64),
            end: len.max(FOOTER_LEN as u64),
            len,
        });
    }
    let footer = &bytes[bytes.len() - FOOTER_LEN..];
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&footer[40..]);
    let found = u64::from_le_bytes(magic);
    if found != MAGIC {
        return Err(Error::BadMagic {
            path: t.path,
            found,
            expected: MAGIC,
        });
    }
    let footer_offset = len - FOOTER_LEN as u64;
    let mut pos = 0;
    let corrupt_footer = |reason: &str| t.corrupt(footer_offset, format!("footer: {reason}"));
    let _metaindex = decode_handle(&footer[..40], &mut pos)
        .ok_or_else(|| corrupt_footer("bad meta-index handle"))?;
    let index =
        decode_handle(&footer[..40], &mut pos).ok_or_else(|| corrupt_footer("bad index handle"))?;

    let index_block = t.block(index, "the index block")?;
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (separator, handle_bytes) in t.entries(index, index_block)? {
        let mut p = 0;
        let handle = decode_handle(&handle_bytes, &mut p).ok_or_else(|| {
            t.corrupt(
                index.offset,
                format!(
                    "index entry {:?} holds no block handle",
                    String::from_utf8_lossy(&separator)
                ),
            )
        })?;
        let data = t.block(handle, "a data block")?;
        for (key, value) in t.entries(handle, data)? {
            if let Some((last, _)) = out.last() {
                if *last >= key {
                    return Err(t.corrupt(handle.offset, "keys are not in increasing order".into()));
                }
            }
            if key > separator {
                return Err(t.corrupt(
                    handle.offset,
                    "a key lies beyond its block's index separator".into(),
                ));
            }
            out.push((key, value));
        }
    }
    Ok(out)
}

fn decode_handle(buf: &[u8], pos: &mut usize) -> Option<Handle> {
    let offset = varint(buf, pos)?;
    let size = varint(buf, pos)?;
    Some(Handle { offset, size })
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

struct Table<'a> {
    path: PathBuf,
    bytes: &'a [u8],
}

impl<'a> Table<'a> {
    fn corrupt(&self, offset: u64, reason: String) -> Error {
        Error::CorruptBlock {
            path: self.path.clone(),
            offset,
            reason,
        }
    }

    /// The block's contents, its trailer checked.
    fn block(&self, h: Handle, what: &str) -> Result<&'a [u8]> {
        let len = self.bytes.len() as u64;
        let end = h
            .offset
            .checked_add(h.size)
            .and_then(|e| e.checked_add(TRAILER_LEN as u64))
            .filter(|&e| e <= len - FOOTER_LEN as u64)
            .ok_or_else(|| Error::Truncated {
                path: self.path.clone(),
                what: format!("{what} (with its trailer)"),
                start: h.offset,
                end: h
                    .offset
                    .saturating_add(h.size)
                    .saturating_add(TRAILER_LEN as u64),
                len: len.saturating_sub(FOOTER_LEN as u64),
            })?;
        let (start, n) = (h.offset as usize, h.size as usize);
        let with_type = &self.bytes[start..start + n + 1];
        let trailer = &self.bytes[start + n + 1..end as usize];
        let stored = crc32c::unmask(u32::from_le_bytes([
            trailer[0], trailer[1], trailer[2], trailer[3],
        ]));
        let computed = crc32c::value(with_type);
        if stored != computed {
            return Err(Error::BlockChecksum {
                path: self.path.clone(),
                offset: h.offset,
                stored,
                computed,
            });
        }
        let kind = with_type[n];
        if kind != 0 {
            return Err(Error::Compressed {
                path: self.path.clone(),
                offset: h.offset,
                kind,
            });
        }
        Ok(&with_type[..n])
    }

    /// Every entry of one block, keys reassembled from their shared prefixes.
    fn entries(&self, h: Handle, block: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let bad = |reason: &str| self.corrupt(h.offset, reason.to_string());
        if block.len() < 4 {
            return Err(bad("block shorter than its restart count"));
        }
        let count_at = block.len() - 4;
        let num_restarts = u32::from_le_bytes([
            block[count_at],
            block[count_at + 1],
            block[count_at + 2],
            block[count_at + 3],
        ]) as usize;
        let restarts_len = num_restarts
            .checked_mul(4)
            .filter(|&l| l <= count_at)
            .ok_or_else(|| {
                bad(&format!(
                    "{num_restarts} restart points do not fit in a {}-byte block",
                    block.len()
                ))
            })?;
        let limit = count_at - restarts_len;
        let restarts: Vec<usize> = block[limit..count_at]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        if restarts.iter().any(|&r| r >= limit.max(1)) {
            return Err(bad("a restart point lies outside the entries"));
        }
        let data = &block[..limit];
        let mut pos = 0;
        let mut key: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        while pos < data.len() {
            let at_restart = restarts.binary_search(&pos).is_ok();
            let entry_start = pos;
            let mut field =
                || varint(data, &mut pos).ok_or_else(|| bad("entry header runs past the block"));
            let shared = field()? as usize;
            let non_shared = field()? as usize;
            let value_len = field()? as usize;
            if shared > key.len() || (at_restart && shared != 0) {
                return Err(bad(&format!(
                    "entry at {entry_start} shares {shared} key bytes with a {}-byte previous key",
                    key.len()
                )));
            }
            let end = pos
                .checked_add(non_shared)
                .and_then(|e| e.checked_add(value_len))
                .filter(|&e| e <= data.len())
                .ok_or_else(|| bad(&format!("entry at {entry_start} runs past the block")))?;
            key.truncate(shared);
            key.extend_from_slice(&data[pos..pos + non_shared]);
            out.push((key.clone(), data[pos + non_shared..end].to_vec()));
            pos = end;
        }
        Ok(out)
    }
}

/// A minimal table writer, for tests of the reader's block handling (multi-block tables, restarts)
/// beyond what the TensorFlow-written fixtures exercise.
#[cfg(test)]
pub(crate) mod writer {
    use super::*;
    use crate::proto::tests::varint as put_varint;

    fn put_block(
        out: &mut Vec<u8>,
        entries: &[(Vec<u8>, Vec<u8>)],
        restart_interval: usize,
    ) -> Handle {
        let mut block = Vec::new();
        let mut restarts = Vec::new();
        let mut prev: &[u8] = &[];
        for (i, (k, v)) in entries.iter().enumerate() {
            let shared = if i % restart_interval == 0 {
                restarts.push(block.len() as u32);
                0
            } else {
                prev.iter()
                    .zip(k.iter())
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            put_varint(shared as u64, &mut block);
            put_varint((k.len() - shared) as u64, &mut block);
            put_varint(v.len() as u64, &mut block);
            block.extend_from_slice(&k[shared..]);
            block.extend_from_slice(v);
            prev = k;
        }
        if restarts.is_empty() {
            restarts.push(0);
        }
        for r in &restarts {
            block.extend(r.to_le_bytes());
        }
        block.extend((restarts.len() as u32).to_le_bytes());
        let h = Handle {
            offset: out.len() as u64,
            size: block.len() as u64,
        };
        block.push(0);
        let crc = crc32c::mask(crc32c::value(&block));
        out.extend(&block);
        out.extend(crc.to_le_bytes());
        h
    }

    fn put_handle(h: Handle, out: &mut Vec<u8>) {
        put_varint(h.offset, out);
        put_varint(h.size, out);
    }

    /// A table of `entries` (sorted) split into blocks of `per_block` entries.
    pub(crate) fn table(
        entries: &[(Vec<u8>, Vec<u8>)],
        per_block: usize,
        restart_interval: usize,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut index = Vec::new();
        for chunk in entries.chunks(per_block) {
            let h = put_block(&mut out, chunk, restart_interval);
            let mut hv = Vec::new();
            put_handle(h, &mut hv);
            index.push((chunk[chunk.len() - 1].0.clone(), hv));
        }
        let meta = put_block(&mut out, &[], restart_interval);
        let idx = put_block(&mut out, &index, 1);
        let mut footer = Vec::new();
        put_handle(meta, &mut footer);
        put_handle(idx, &mut footer);
        footer.resize(40, 0);
        footer.extend(MAGIC.to_le_bytes());
        out.extend(footer);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    format!("tnn_model/conv{}/pre_0/weights_{i:05}", i % 7).into_bytes(),
                    vec![i as u8; i % 5],
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn reads_multi_block_tables_with_restarts() {
        let entries = sample(300);
        for (per_block, restart) in [(1000, 16), (7, 3), (1, 1), (50, 1)] {
            let bytes = writer::table(&entries, per_block, restart);
            let got = read_all(Path::new("t.index"), &bytes).expect("reads");
            assert_eq!(got, entries, "per_block {per_block} restart {restart}");
        }
        let empty = writer::table(&[], 10, 16);
        assert!(read_all(Path::new("e.index"), &empty)
            .expect("reads")
            .is_empty());
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let entries = sample(40);
        let bytes = writer::table(&entries, 9, 4);
        // Bytes that carry nothing the reader uses: the meta-index block and its handle
        // (TensorFlow's bundles have no meta blocks) and the footer's zero padding.
        let f = bytes.len() - FOOTER_LEN;
        let mut p = 0;
        let meta = decode_handle(&bytes[f..f + 40], &mut p).expect("meta handle");
        let q = p;
        decode_handle(&bytes[f..f + 40], &mut p);
        let meta_block = meta.offset as usize..(meta.offset + meta.size) as usize + TRAILER_LEN;
        let unused = |i: usize| {
            meta_block.contains(&i) || (f..f + q).contains(&i) || (f + p..f + 40).contains(&i)
        };
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            if let Ok(got) = read_all(Path::new("t.index"), &bad) {
                assert!(
                    unused(i) && got == entries,
                    "byte {i} flipped went unnoticed"
                );
            }
        }
    }

    #[test]
    fn specific_errors() {
        let entries = sample(20);
        let bytes = writer::table(&entries, 8, 4);
        let p = Path::new("t.index");
        assert!(matches!(
            read_all(p, &bytes[..30]),
            Err(Error::Truncated { .. })
        ));
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(matches!(read_all(p, &bad), Err(Error::BadMagic { .. })));
        let mut bad = bytes.clone();
        bad[3] ^= 0x40;
        assert!(matches!(
            read_all(p, &bad),
            Err(Error::BlockChecksum { offset: 0, .. })
        ));
        // Drop the middle of the file: the index block's handle now points past the end.
        let mut cut = bytes[..bytes.len() / 2].to_vec();
        cut.extend_from_slice(&bytes[bytes.len() - FOOTER_LEN..]);
        assert!(matches!(read_all(p, &cut), Err(Error::Truncated { .. })));
    }

    #[test]
    fn compressed_blocks_are_refused() {
        let entries = sample(5);
        let mut bytes = writer::table(&entries, 10, 16);
        // First block: its compression byte sits right after its contents; re-checksum it as snappy.
        let mut p = 0;
        let f = bytes.len() - FOOTER_LEN;
        decode_handle(&bytes[f..], &mut p);
        let idx = decode_handle(&bytes[f..], &mut p).expect("handle");
        let t = Table {
            path: "x".into(),
            bytes: &bytes,
        };
        let index = t.block(idx, "index").expect("index").to_vec();
        let (_, hv) = t.entries(idx, &index).expect("entries").remove(0);
        let mut q = 0;
        let first = decode_handle(&hv, &mut q).expect("handle");
        let n = first.size as usize;
        bytes[n] = 1;
        let crc = crc32c::mask(crc32c::value(&bytes[..n + 1]));
        bytes[n + 1..n + 5].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            read_all(Path::new("x"), &bytes),
            Err(Error::Compressed { kind: 1, .. })
        ));
    }
}
