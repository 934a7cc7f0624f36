//! The table of ggml tensor types: id (as in the GGUF spec), name, block size in *elements* and
//! block size in *bytes*. Every tensor byte size in the crate is computed from this one table.
//!
//! Ids that ggml retired (4, 5: Q4_2/Q4_3; 31-33: Q4_0_4_4 ...; 36-38: IQ4_NL_4_4 ...) are
//! unknown here, as they are to current llama.cpp: a file that uses them is rejected.

use std::fmt;

/// A ggml tensor element type. The discriminant is the id stored in GGUF files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    Iq2Xxs = 16,
    Iq2Xs = 17,
    Iq3Xxs = 18,
    Iq1S = 19,
    Iq4Nl = 20,
    Iq3S = 21,
    Iq2S = 22,
    Iq4Xs = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    Iq1M = 29,
    Bf16 = 30,
    Tq1_0 = 34,
    Tq2_0 = 35,
    Mxfp4 = 39,
    Nvfp4 = 40,
    Q1_0 = 41,
}

/// Layout facts of one type: how many elements a block holds and how many bytes it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeLayout {
    pub name: &'static str,
    pub block_elems: u64,
    pub block_bytes: u64,
}

const fn layout(name: &'static str, block_elems: u64, block_bytes: u64) -> TypeLayout {
    TypeLayout {
        name,
        block_elems,
        block_bytes,
    }
}

impl GgmlType {
    /// Every known type, in id order.
    pub const ALL: [GgmlType; 34] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Q8K,
        GgmlType::Iq2Xxs,
        GgmlType::Iq2Xs,
        GgmlType::Iq3Xxs,
        GgmlType::Iq1S,
        GgmlType::Iq4Nl,
        GgmlType::Iq3S,
        GgmlType::Iq2S,
        GgmlType::Iq4Xs,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::Iq1M,
        GgmlType::Bf16,
        GgmlType::Tq1_0,
        GgmlType::Tq2_0,
        GgmlType::Mxfp4,
        GgmlType::Nvfp4,
        GgmlType::Q1_0,
    ];

    /// The type with this GGUF id, or `None` for an unknown or retired id.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Self::ALL.iter().copied().find(|t| *t as u32 == id)
    }

    pub fn id(self) -> u32 {
        self as u32
    }

    /// Block size in elements and in bytes. Byte counts follow the block structs of
    /// ggml-common.h (e.g. Q4_K: f16 d + f16 dmin + 12 scale bytes + 128 nibble bytes = 144).
    pub const fn layout(self) -> TypeLayout {
        use GgmlType::*;
        match self {
            F32 => layout("F32", 1, 4),
            F16 => layout("F16", 1, 2),
            Q4_0 => layout("Q4_0", 32, 2 + 16),
            Q4_1 => layout("Q4_1", 32, 2 + 2 + 16),
            Q5_0 => layout("Q5_0", 32, 2 + 4 + 16),
            Q5_1 => layout("Q5_1", 32, 2 + 2 + 4 + 16),
            Q8_0 => layout("Q8_0", 32, 2 + 32),
            Q8_1 => layout("Q8_1", 32, 2 + 2 + 32),
            Q2K => layout("Q2_K", 256, 16 + 64 + 2 + 2),
            Q3K => layout("Q3_K", 256, 32 + 64 + 12 + 2),
            Q4K => layout("Q4_K", 256, 2 + 2 + 12 + 128),
            Q5K => layout("Q5_K", 256, 2 + 2 + 12 + 32 + 128),
            Q6K => layout("Q6_K", 256, 128 + 64 + 16 + 2),
            Q8K => layout("Q8_K", 256, 4 + 256 + 32),
            Iq2Xxs => layout("IQ2_XXS", 256, 2 + 64),
            Iq2Xs => layout("IQ2_XS", 256, 2 + 64 + 8),
            Iq3Xxs => layout("IQ3_XXS", 256, 2 + 96),
            Iq1S => layout("IQ1_S", 256, 2 + 32 + 16),
            Iq4Nl => layout("IQ4_NL", 32, 2 + 16),
            Iq3S => layout("IQ3_S", 256, 2 + 64 + 8 + 32 + 4),
            Iq2S => layout("IQ2_S", 256, 2 + 64 + 8 + 8),
            Iq4Xs => layout("IQ4_XS", 256, 2 + 2 + 4 + 128),
            I8 => layout("I8", 1, 1),
            I16 => layout("I16", 1, 2),
            I32 => layout("I32", 1, 4),
            I64 => layout("I64", 1, 8),
            F64 => layout("F64", 1, 8),
            Iq1M => layout("IQ1_M", 256, 32 + 16 + 8),
            Bf16 => layout("BF16", 1, 2),
            Tq1_0 => layout("TQ1_0", 256, 48 + 4 + 2),
            Tq2_0 => layout("TQ2_0", 256, 64 + 2),
            Mxfp4 => layout("MXFP4", 32, 1 + 16),
            Nvfp4 => layout("NVFP4", 64, 4 + 32),
            Q1_0 => layout("Q1_0", 128, 2 + 16),
        }
    }

    pub const fn name(self) -> &'static str {
        self.layout().name
    }

    pub const fn block_elems(self) -> u64 {
        self.layout().block_elems
    }

    pub const fn block_bytes(self) -> u64 {
        self.layout().block_bytes
    }

    /// Bytes taken by `n_elems` elements, or `None` when `n_elems` is not a whole number of
    /// blocks or the product overflows.
    pub fn bytes_for(self, n_elems: u64) -> Option<u64> {
        let l = self.layout();
        if !n_elems.is_multiple_of(l.block_elems) {
            return None;
        }
        (n_elems / l.block_elems).checked_mul(l.block_bytes)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_retired_ids_are_unknown() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        for retired in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert_eq!(GgmlType::from_id(retired), None, "id {retired}");
        }
    }

    #[test]
    fn sizes_match_gguf_py_quant_sizes() {
        // (block elements, block bytes) as listed by gguf-py's GGML_QUANT_SIZES.
        let expected: &[(GgmlType, u64, u64)] = &[
            (GgmlType::F32, 1, 4),
            (GgmlType::F16, 1, 2),
            (GgmlType::Q4_0, 32, 18),
            (GgmlType::Q4_1, 32, 20),
            (GgmlType::Q5_0, 32, 22),
            (GgmlType::Q5_1, 32, 24),
            (GgmlType::Q8_0, 32, 34),
            (GgmlType::Q8_1, 32, 36),
            (GgmlType::Q2K, 256, 84),
            (GgmlType::Q3K, 256, 110),
            (GgmlType::Q4K, 256, 144),
            (GgmlType::Q5K, 256, 176),
            (GgmlType::Q6K, 256, 210),
            (GgmlType::Q8K, 256, 292),
            (GgmlType::Iq2Xxs, 256, 66),
            (GgmlType::Iq2Xs, 256, 74),
            (GgmlType::Iq3Xxs, 256, 98),
            (GgmlType::Iq1S, 256, 50),
            (GgmlType::Iq4Nl, 32, 18),
            (GgmlType::Iq3S, 256, 110),
            (GgmlType::Iq2S, 256, 82),
            (GgmlType::Iq4Xs, 256, 136),
            (GgmlType::I8, 1, 1),
            (GgmlType::I16, 1, 2),
            (GgmlType::I32, 1, 4),
            (GgmlType::I64, 1, 8),
            (GgmlType::F64, 1, 8),
            (GgmlType::Iq1M, 256, 56),
            (GgmlType::Bf16, 1, 2),
            (GgmlType::Tq1_0, 256, 54),
            (GgmlType::Tq2_0, 256, 66),
            (GgmlType::Mxfp4, 32, 17),
            (GgmlType::Nvfp4, 64, 36),
            (GgmlType::Q1_0, 128, 18),
        ];
        assert_eq!(expected.len(), GgmlType::ALL.len());
        for &(t, elems, bytes) in expected {
            assert_eq!((t.block_elems(), t.block_bytes()), (elems, bytes), "{t}");
        }
    }

    #[test]
    fn bytes_for_counts_blocks_in_elements() {
        assert_eq!(GgmlType::Q4K.bytes_for(256 * 3), Some(144 * 3));
        assert_eq!(GgmlType::Q4K.bytes_for(255), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
        assert_eq!(GgmlType::Q8_0.bytes_for(64), Some(68));
    }
}
