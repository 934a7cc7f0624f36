//! The GGUF parser over a byte slice: header, metadata, tensor table, data section layout.
//!
//! Every count, length and offset read from the file is checked before it is used: a count is
//! compared with what the rest of the file could hold before anything is allocated for it,
//! every product and sum is checked, and every tensor's data must lie inside the file, aligned,
//! without overlapping another. This module never panics on any input and never reads outside
//! the slice it was given.

use std::collections::HashMap;

use super::error::{GgufError, Result};
use super::{Array, GgmlType, Value, ValueType};

/// "GGUF" as stored at offset 0.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of the data section and of every tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 1 << 16;
/// Keys longer than this are rejected (no real key comes near it).
pub const MAX_KEY_LEN: u64 = 65_535;
/// ggml keeps tensor names in a 64-byte buffer with its NUL, so longer names cannot be loaded
/// by ggml-based programs either; we reject them.
pub const MAX_TENSOR_NAME_LEN: u64 = 63;
/// The most dimensions a tensor may have.
pub const MAX_DIMS: u32 = 4;

/// Smallest possible encoding of one metadata pair: key length, a 1-byte key, the value type
/// and a 1-byte value.
const MIN_KV_LEN: u64 = 8 + 1 + 4 + 1;
/// Smallest possible encoding of one tensor info: name length, a 1-byte name, dimension
/// count, one dimension, type and offset.
const MIN_TENSOR_INFO_LEN: u64 = 8 + 1 + 4 + 8 + 4 + 8;

/// One entry of the tensor table, validated against the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions in ggml order (fastest-varying first); unused trailing entries are 1.
    pub dims: [u64; 4],
    pub n_dims: u32,
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
    /// Absolute file offset of the data.
    pub file_offset: u64,
    /// File offset of this entry in the tensor table (for error messages).
    pub info_offset: u64,
}

impl TensorInfo {
    pub fn shape(&self) -> &[u64] {
        &self.dims[..self.n_dims as usize]
    }
}

/// The parsed structure of a GGUF file; the bytes stay with the caller.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
    pub key_index: HashMap<String, usize>,
    pub tensor_index: HashMap<String, usize>,
}

/// A position in the file with bounds-checked reads.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        let have = self.remaining();
        if n > have {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.offset(),
                need: n,
                have,
            });
        }
        // n <= remaining <= usize::MAX, so the cast and the slice are in bounds.
        let n = n as usize;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Rejects `count` entries of at least `min_len` bytes each when the rest of the file
    /// cannot hold them. `at` is where the count was read.
    fn check_count(
        &self,
        count: u64,
        min_len: u64,
        at: u64,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let have = self.remaining();
        let max = have / min_len.max(1);
        if count > max {
            return Err(GgufError::CountTooLarge {
                what: what(),
                offset: at,
                count,
                have,
                max,
            });
        }
        Ok(())
    }
}

/// Parses the header, metadata and tensor table of `buf`, and checks every tensor's data range
/// against `buf.len()`.
pub fn parse(buf: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { buf, pos: 0 };
    let magic = c
        .take(4, || "magic".into())
        .map_err(|_| GgufError::BadMagic {
            found: buf[..buf.len().min(4)].to_vec(),
        })?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = c.u32(|| "version".into())?;
    if !(2..=3).contains(&version) {
        // A big-endian writer stores 2 or 3 as 0x02000000 or 0x03000000.
        if (1..=3).contains(&version.swap_bytes()) {
            return Err(GgufError::BigEndian { raw: version });
        }
        return Err(GgufError::UnsupportedVersion { version });
    }
    let at = c.offset();
    let n_tensors = c.u64(|| "tensor count".into())?;
    let n_kv = c.u64(|| "metadata count".into())?;
    // Both tables follow, so each alone must fit in what remains.
    c.check_count(n_tensors, MIN_TENSOR_INFO_LEN, at, || "tensor count".into())?;
    c.check_count(n_kv, MIN_KV_LEN, at + 8, || "metadata count".into())?;

    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut key_index = HashMap::with_capacity(n_kv as usize);
    for _ in 0..n_kv {
        let key_at = c.offset();
        let key = read_key(&mut c)?;
        if key_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_at,
            });
        }
        let ty_at = c.offset();
        let ty_id = c.u32(|| format!("value type of key {key:?}"))?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            offset: ty_at,
            id: ty_id,
        })?;
        let value = read_value(&mut c, ty, &key)?;
        key_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let alignment = match key_index.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => match metadata[i].1 {
            Value::U32(a) if a.is_power_of_two() && u64::from(a) <= MAX_ALIGNMENT => a.into(),
            Value::U32(a) => {
                return Err(GgufError::BadAlignment {
                    value: a.into(),
                    max: MAX_ALIGNMENT,
                });
            }
            ref v => {
                return Err(GgufError::WrongType {
                    key: "general.alignment".into(),
                    found: v.value_type(),
                    expected: "u32",
                });
            }
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let info = read_tensor_info(&mut c)?;
        if tensor_index.contains_key(&info.name) {
            return Err(GgufError::DuplicateTensor {
                tensor: info.name,
                offset: info.info_offset,
            });
        }
        tensor_index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
    }

    let end_of_table = c.offset();
    let data_offset =
        end_of_table
            .checked_next_multiple_of(alignment)
            .ok_or(GgufError::DataOffsetOverflow {
                offset: end_of_table,
            })?;
    place_tensors(&mut tensors, data_offset, alignment, buf.len() as u64)?;

    Ok(Parsed {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        key_index,
        tensor_index,
    })
}

fn read_key(c: &mut Cursor<'_>) -> Result<String> {
    let at = c.offset();
    let len = c.u64(|| "key length".into())?;
    if len == 0 {
        return Err(GgufError::BadKey {
            offset: at,
            reason: "the key is empty".into(),
        });
    }
    if len > MAX_KEY_LEN {
        return Err(GgufError::BadKey {
            offset: at,
            reason: format!("the key is {len} bytes long, more than {MAX_KEY_LEN}"),
        });
    }
    let bytes = c.take(len, || "key".into())?;
    // Stricter than the spec (UTF-8): every real key is ASCII, and ASCII keys cannot hide
    // look-alike characters or invalid sequences from whoever reads them.
    if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
        return Err(GgufError::BadKey {
            offset: at,
            reason: format!(
                "the key is not ASCII (byte {i} is 0x{:02x}): {:?}",
                bytes[i],
                String::from_utf8_lossy(bytes)
            ),
        });
    }
    // ASCII is valid UTF-8.
    Ok(bytes.iter().map(|&b| char::from(b)).collect())
}

fn read_string(c: &mut Cursor<'_>, key: &str) -> Result<Box<[u8]>> {
    let len = c.u64(|| format!("string length in key {key:?}"))?;
    Ok(c.take(len, || format!("string in key {key:?}"))?.into())
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str) -> Result<Value> {
    let what = || format!("value of key {key:?}");
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::from_le_bytes(c.array(what)?)),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(what)?)),
        ValueType::Bool => {
            let at = c.offset();
            let [b] = c.array(what)?;
            Value::Bool(to_bool(b, key, at)?)
        }
        ValueType::String => Value::String(read_string(c, key)?),
        ValueType::Array => Value::Array(read_array(c, key)?),
    })
}

fn to_bool(byte: u8, key: &str, offset: u64) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        byte => Err(GgufError::BadBool {
            key: key.into(),
            offset,
            byte,
        }),
    }
}

/// Reads `count` fixed-size little-endian numbers; the caller has checked that they fit.
fn read_numbers<T, const N: usize>(
    c: &mut Cursor<'_>,
    count: u64,
    key: &str,
    from_le: fn([u8; N]) -> T,
) -> Result<Vec<T>> {
    // count * N <= remaining: check_count ran with N as the element size.
    let bytes = c.take(count * N as u64, || format!("array of key {key:?}"))?;
    Ok(bytes
        .chunks_exact(N)
        .map(|ch| {
            let mut a = [0u8; N];
            a.copy_from_slice(ch);
            from_le(a)
        })
        .collect())
}

fn read_array(c: &mut Cursor<'_>, key: &str) -> Result<Array> {
    let at = c.offset();
    let elem_id = c.u32(|| format!("array element type of key {key:?}"))?;
    let elem = ValueType::from_id(elem_id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.into(),
        offset: at,
        id: elem_id,
    })?;
    // Stricter than the spec, as ggml's reader: no arrays of arrays (no real key has one).
    let nested = || GgufError::NestedArray {
        key: key.into(),
        offset: at,
    };
    if elem == ValueType::Array {
        return Err(nested());
    }
    let count_at = c.offset();
    let count = c.u64(|| format!("array length of key {key:?}"))?;
    c.check_count(count, elem.min_encoded_len(), count_at, || {
        format!("array of key {key:?}")
    })?;
    Ok(match elem {
        ValueType::U8 => Array::U8(read_numbers(c, count, key, u8::from_le_bytes)?),
        ValueType::I8 => Array::I8(read_numbers(c, count, key, i8::from_le_bytes)?),
        ValueType::U16 => Array::U16(read_numbers(c, count, key, u16::from_le_bytes)?),
        ValueType::I16 => Array::I16(read_numbers(c, count, key, i16::from_le_bytes)?),
        ValueType::U32 => Array::U32(read_numbers(c, count, key, u32::from_le_bytes)?),
        ValueType::I32 => Array::I32(read_numbers(c, count, key, i32::from_le_bytes)?),
        ValueType::U64 => Array::U64(read_numbers(c, count, key, u64::from_le_bytes)?),
        ValueType::I64 => Array::I64(read_numbers(c, count, key, i64::from_le_bytes)?),
        ValueType::F32 => Array::F32(read_numbers(c, count, key, f32::from_le_bytes)?),
        ValueType::F64 => Array::F64(read_numbers(c, count, key, f64::from_le_bytes)?),
        ValueType::Bool => {
            let start = c.offset();
            let bytes = read_numbers(c, count, key, u8::from_le_bytes)?;
            let mut out = Vec::with_capacity(bytes.len());
            for (i, b) in bytes.into_iter().enumerate() {
                out.push(to_bool(b, key, start + i as u64)?);
            }
            Array::Bool(out)
        }
        ValueType::String => {
            let mut out = Vec::with_capacity(count as usize);
            for _ in 0..count {
                out.push(read_string(c, key)?);
            }
            Array::String(out)
        }
        ValueType::Array => return Err(nested()),
    })
}

fn read_tensor_info(c: &mut Cursor<'_>) -> Result<TensorInfo> {
    let info_offset = c.offset();
    let len = c.u64(|| "tensor name length".into())?;
    if len == 0 || len > MAX_TENSOR_NAME_LEN {
        return Err(GgufError::BadTensorName {
            offset: info_offset,
            reason: format!(
                "the name is {len} bytes long (1 to {MAX_TENSOR_NAME_LEN} are allowed)"
            ),
        });
    }
    let bytes = c.take(len, || "tensor name".into())?;
    let name = String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::BadTensorName {
        offset: info_offset,
        reason: format!(
            "the name is not valid UTF-8: {:?}",
            String::from_utf8_lossy(bytes)
        ),
    })?;
    let what = |field: &str| format!("{field} of tensor {name:?}");
    let n_dims = c.u32(|| what("dimension count"))?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::BadDimCount {
            tensor: name,
            offset: info_offset,
            n_dims,
        });
    }
    let mut dims = [1u64; 4];
    for (index, d) in dims.iter_mut().take(n_dims as usize).enumerate() {
        let value = c.u64(|| what("dimension"))?;
        let reason = if value == 0 {
            "empty tensors are not allowed"
        } else if value > i64::MAX as u64 {
            "larger than 2^63 - 1"
        } else {
            *d = value;
            continue;
        };
        return Err(GgufError::BadDim {
            tensor: name,
            offset: info_offset,
            index,
            value,
            reason,
        });
    }
    let ty_id = c.u32(|| what("type"))?;
    let ty = GgmlType::from_id(ty_id).ok_or_else(|| GgufError::UnknownTensorType {
        tensor: name.clone(),
        offset: info_offset,
        id: ty_id,
    })?;
    let offset = c.u64(|| what("data offset"))?;

    let overflow = |what| GgufError::Overflow {
        tensor: name.clone(),
        offset: info_offset,
        what,
    };
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| overflow("the element count"))?;
    let block = ty.block_elems();
    if dims[0] % block != 0 {
        return Err(GgufError::NotBlockMultiple {
            tensor: name,
            offset: info_offset,
            ne0: dims[0],
            ty,
            block,
        });
    }
    let n_bytes = ty
        .bytes_for(n_elements)
        .ok_or_else(|| overflow("the byte size"))?;
    Ok(TensorInfo {
        name,
        dims,
        n_dims,
        ty,
        offset,
        n_elements,
        n_bytes,
        file_offset: 0,
        info_offset,
    })
}

/// Computes every tensor's absolute data range and checks alignment, bounds and overlap.
fn place_tensors(
    tensors: &mut [TensorInfo],
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<()> {
    for t in tensors.iter_mut() {
        if t.offset % alignment != 0 {
            return Err(GgufError::Misaligned {
                tensor: t.name.clone(),
                data_offset: t.offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(GgufError::Overflow {
                tensor: t.name.clone(),
                offset: t.info_offset,
                what: "the data range",
            });
        };
        if end > file_len {
            return Err(GgufError::OutOfFile {
                tensor: t.name.clone(),
                start,
                end,
                file_len,
            });
        }
        t.file_offset = start;
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].file_offset);
    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        if b.file_offset < a.file_offset + a.n_bytes {
            return Err(GgufError::Overlap {
                first: a.name.clone(),
                second: b.name.clone(),
                offset: b.file_offset,
            });
        }
    }
    Ok(())
}
