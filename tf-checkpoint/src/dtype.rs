//! TensorFlow's `DataType` codes (`types.proto`) and the byte width of each numeric one.

use std::fmt;

/// The TensorFlow data types a checkpoint may hold (reference types, codes ≥ 100, never appear in
/// a bundle: the saver stores values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `DT_FLOAT`, code 1.
    F32,
    /// `DT_DOUBLE`, code 2.
    F64,
    /// `DT_INT32`, code 3.
    I32,
    /// `DT_UINT8`, code 4.
    U8,
    /// `DT_INT16`, code 5.
    I16,
    /// `DT_INT8`, code 6.
    I8,
    /// `DT_STRING`, code 7.
    String,
    /// `DT_COMPLEX64`, code 8.
    Complex64,
    /// `DT_INT64`, code 9.
    I64,
    /// `DT_BOOL`, code 10.
    Bool,
    /// `DT_BFLOAT16`, code 14.
    BF16,
    /// `DT_UINT16`, code 17.
    U16,
    /// `DT_COMPLEX128`, code 18.
    Complex128,
    /// `DT_HALF`, code 19.
    F16,
    /// `DT_RESOURCE`, code 20.
    Resource,
    /// `DT_VARIANT`, code 21.
    Variant,
    /// `DT_UINT32`, code 22.
    U32,
    /// `DT_UINT64`, code 23.
    U64,
}

impl DType {
    /// The type of a `DataType` code, `None` for codes this reader does not know.
    pub fn from_code(code: i32) -> Option<DType> {
        Some(match code {
            1 => DType::F32,
            2 => DType::F64,
            3 => DType::I32,
            4 => DType::U8,
            5 => DType::I16,
            6 => DType::I8,
            7 => DType::String,
            8 => DType::Complex64,
            9 => DType::I64,
            10 => DType::Bool,
            14 => DType::BF16,
            17 => DType::U16,
            18 => DType::Complex128,
            19 => DType::F16,
            20 => DType::Resource,
            21 => DType::Variant,
            22 => DType::U32,
            23 => DType::U64,
            _ => return None,
        })
    }

    /// Bytes per element, `None` for types without a fixed-size encoding.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DType::U8 | DType::I8 | DType::Bool => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 | DType::Complex64 => 8,
            DType::Complex128 => 16,
            DType::String | DType::Resource | DType::Variant => return None,
        })
    }

    /// TensorFlow's name for the type (`float32`, `int64`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::String => "string",
            DType::Complex64 => "complex64",
            DType::I64 => "int64",
            DType::Bool => "bool",
            DType::BF16 => "bfloat16",
            DType::U16 => "uint16",
            DType::Complex128 => "complex128",
            DType::F16 => "float16",
            DType::Resource => "resource",
            DType::Variant => "variant",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_names() {
        let known: Vec<_> = (0..40).filter_map(DType::from_code).collect();
        assert_eq!(known.len(), 18);
        assert_eq!(DType::from_code(1), Some(DType::F32));
        assert_eq!(DType::from_code(9), Some(DType::I64));
        assert_eq!(DType::from_code(0), None); // DT_INVALID
        assert_eq!(DType::from_code(101), None); // DT_FLOAT_REF
        assert_eq!(DType::I64.size(), Some(8));
        assert_eq!(DType::String.size(), None);
        assert_eq!(DType::BF16.to_string(), "bfloat16");
    }
}
