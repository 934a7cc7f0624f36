//! A validated GGUF file: its bytes (memory-mapped, or owned for files built in memory) and
//! the parsed header, metadata and tensor table.

use std::fs::File;
use std::path::Path;

use super::Value;
use super::error::{GgufError, Result};
use super::parse::{self, Parsed, TensorInfo};

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

/// A GGUF file whose structure has been fully validated: every tensor's data lies inside it.
pub struct GgufFile {
    storage: Storage,
    parsed: Parsed,
}

impl GgufFile {
    /// Maps the file at `path` read-only and validates it.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            // Mapping an empty file fails on some systems; it is simply not a GGUF file.
            return Self::from_bytes(Vec::new());
        }
        // SAFETY: the map is read-only and private to this process. Its contents can still
        // change if another process writes to or truncates the file while it is mapped; that is
        // the standard caveat of every mmap-based model loader, documented in docs/GGUF.md.
        // All reads go through slices bounded by the length validated here.
        let map = unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(io)?;
        let parsed = parse::parse(&map)?;
        Ok(GgufFile {
            storage: Storage::Mapped(map),
            parsed,
        })
    }

    /// Validates a file held in memory (files built by tests and tools).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        let parsed = parse::parse(&bytes)?;
        Ok(GgufFile {
            storage: Storage::Owned(bytes),
            parsed,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }

    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn version(&self) -> u32 {
        self.parsed.version
    }

    pub fn alignment(&self) -> u64 {
        self.parsed.alignment
    }

    /// File offset where the data section starts.
    pub fn data_offset(&self) -> u64 {
        self.parsed.data_offset
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.parsed.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        let &i = self.parsed.key_index.get(key)?;
        Some(&self.parsed.metadata[i].1)
    }

    /// The string value of `key`: `Ok(None)` when absent, an error when it is not a UTF-8
    /// string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| GgufError::WrongType {
                key: key.into(),
                found: v.value_type(),
                expected: "UTF-8 string",
            }),
        }
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.parsed.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let &i = self.parsed.tensor_index.get(name)?;
        Some(&self.parsed.tensors[i])
    }

    /// The bytes of a tensor of this file.
    ///
    /// Returns `None` for a `TensorInfo` that does not describe a range of this file.
    pub fn tensor_data(&self, t: &TensorInfo) -> Option<&[u8]> {
        let start = usize::try_from(t.file_offset).ok()?;
        let len = usize::try_from(t.n_bytes).ok()?;
        self.bytes().get(start..start.checked_add(len)?)
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("len", &self.len())
            .field("version", &self.version())
            .field("n_kv", &self.metadata().len())
            .field("n_tensors", &self.tensors().len())
            .finish()
    }
}
