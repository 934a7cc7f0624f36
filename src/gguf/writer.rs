//! A GGUF writer: builds files for tests (valid ones, and the base of malformed ones) and for
//! tools. It records where every field landed ([`Layout`]) so a test can cut or corrupt a file
//! at an exact field.

use std::io;
use std::path::Path;

use super::parse::{DEFAULT_ALIGNMENT, MAGIC};
use super::{Array, GgmlType, Value};

/// Where one field of a written file lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpan {
    /// e.g. `n_kv`, `kv[2].type`, `tensor[0].dim[1]`, `tensor[1].data`.
    pub name: String,
    pub offset: usize,
    pub len: usize,
}

/// The fields of a written file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub fields: Vec<FieldSpan>,
}

impl Layout {
    pub fn field(&self, name: &str) -> Option<&FieldSpan> {
        self.fields.iter().find(|f| f.name == name)
    }
}

struct PendingTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// Builds a GGUF file in memory. Metadata and tensors are written in the order they were added.
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

struct Out {
    bytes: Vec<u8>,
    layout: Layout,
}

impl Out {
    fn put(&mut self, name: impl Into<String>, bytes: &[u8]) {
        self.layout.fields.push(FieldSpan {
            name: name.into(),
            offset: self.bytes.len(),
            len: bytes.len(),
        });
        self.bytes.extend_from_slice(bytes);
    }

    fn pad_to(&mut self, alignment: usize) {
        let n = self.bytes.len().next_multiple_of(alignment) - self.bytes.len();
        if n > 0 {
            self.put("padding", &vec![0u8; n]);
        }
    }
}

impl GgufWriter {
    /// A writer for GGUF version 3.
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Writes this version number instead of 3 (the layout of 2 and 3 is the same).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Appends a metadata pair. Duplicates are written as given (tests need them).
    pub fn add(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Appends a tensor; `data` must hold exactly the bytes its type and shape need.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> io::Result<&mut Self> {
        let n_elems = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let need = n_elems.and_then(|n| ty.bytes_for(n));
        if need != Some(data.len() as u64) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "tensor {name:?}: {} bytes given, {ty} {dims:?} needs {need:?}",
                    data.len()
                ),
            ));
        }
        self.tensors.push(PendingTensor {
            name: name.into(),
            ty,
            dims: dims.to_vec(),
            data,
        });
        Ok(self)
    }

    fn alignment(&self) -> usize {
        match self.metadata.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, Value::U32(a))) if a.is_power_of_two() => *a as usize,
            _ => DEFAULT_ALIGNMENT as usize,
        }
    }

    /// The file's bytes and where each field lies.
    pub fn to_bytes(&self) -> (Vec<u8>, Layout) {
        let mut out = Out {
            bytes: Vec::new(),
            layout: Layout::default(),
        };
        let alignment = self.alignment();
        out.put("magic", &MAGIC);
        out.put("version", &self.version.to_le_bytes());
        out.put("n_tensors", &(self.tensors.len() as u64).to_le_bytes());
        out.put("n_kv", &(self.metadata.len() as u64).to_le_bytes());
        for (i, (key, value)) in self.metadata.iter().enumerate() {
            let f = |field: &str| format!("kv[{i}].{field}");
            out.put(f("key_len"), &(key.len() as u64).to_le_bytes());
            out.put(f("key"), key.as_bytes());
            out.put(f("type"), &value.value_type().id().to_le_bytes());
            let start = out.bytes.len();
            write_value(&mut out.bytes, value);
            out.layout.fields.push(FieldSpan {
                name: f("value"),
                offset: start,
                len: out.bytes.len() - start,
            });
        }
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut next = 0usize;
        for t in &self.tensors {
            offsets.push(next);
            next = (next + t.data.len()).next_multiple_of(alignment);
        }
        for (i, (t, off)) in self.tensors.iter().zip(&offsets).enumerate() {
            let f = |field: &str| format!("tensor[{i}].{field}");
            out.put(f("name_len"), &(t.name.len() as u64).to_le_bytes());
            out.put(f("name"), t.name.as_bytes());
            out.put(f("n_dims"), &(t.dims.len() as u32).to_le_bytes());
            for (j, d) in t.dims.iter().enumerate() {
                out.put(f(&format!("dim[{j}]")), &d.to_le_bytes());
            }
            out.put(f("type"), &t.ty.id().to_le_bytes());
            out.put(f("offset"), &(*off as u64).to_le_bytes());
        }
        if !self.tensors.is_empty() {
            out.pad_to(alignment);
        }
        let data_start = out.bytes.len();
        for (i, (t, off)) in self.tensors.iter().zip(&offsets).enumerate() {
            let pad = data_start + off - out.bytes.len();
            if pad > 0 {
                out.put("padding", &vec![0u8; pad]);
            }
            out.put(format!("tensor[{i}].data"), &t.data);
        }
        (out.bytes, out.layout)
    }

    /// Writes the file to `path`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_bytes().0)
    }
}

fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => write_str(out, s),
        Value::Array(a) => write_array(out, a),
    }
}

fn write_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.elem_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    for i in 0..a.len() {
        if let Some(v) = a.get(i) {
            write_value(out, &v);
        }
    }
}
